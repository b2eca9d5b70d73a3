"""The dashboard (the only package that imports streamlit): view models, state, caches, pages."""
