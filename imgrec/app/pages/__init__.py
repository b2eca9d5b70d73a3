"""The dashboard screens, one script per page, run by :mod:`imgrec.app.router`."""
