"""imgrec dashboard: `streamlit run app.py` — the router over the pages in imgrec/app/pages/."""

from imgrec.app.router import main

main()
