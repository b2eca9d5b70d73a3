"""The HTTP API (``imgrec serve``): FastAPI + uvicorn, read-only over one index, model warm.

Importing this package is cheap: FastAPI, uvicorn and httpx are imported when used.

Example:
    Against a running ``imgrec serve`` (skipped as a test: no server is listening):

    >>> from imgrec.server import search_via_server
    >>> search_via_server("http://127.0.0.1:8600", ["query.jpg"], k=3)["combined"]  # doctest: +SKIP
"""

from imgrec.server.client import result_from_dict, search_via_server, server_info
from imgrec.server.serve import DEFAULT_HOST, DEFAULT_PORT, add_arguments, run

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "add_arguments", "result_from_dict", "run",
           "search_via_server", "server_info"]
