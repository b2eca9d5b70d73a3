"""The script ``streamlit run`` runs: the router (``app.py`` in a checkout, ``imgrec app`` installed)."""

from imgrec.app.router import main

if __name__ == "__main__":  # Streamlit runs the script as __main__; importing it draws nothing
    main()
