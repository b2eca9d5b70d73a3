"""The ``imgrec`` command line."""

from imgrec.cli.main import main

__all__ = ["main"]
