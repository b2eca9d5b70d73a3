"""Dashboard support: the only package besides ``pages/`` that imports streamlit."""
