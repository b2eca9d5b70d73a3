"""``imgrec serve``: its command-line arguments and the uvicorn server that runs the API."""

from __future__ import annotations

import argparse
import contextlib
import copy
import ipaddress
import socket
import sys
from pathlib import Path

from imgrec.errors import ImgrecError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600
DEFAULT_MAX_UPLOAD_MB = 20
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to ``parser`` (the ``imgrec serve`` sub-command)."""
    from imgrec.settings import Settings

    parser.add_argument("--index", type=Path, metavar="DIR",
                        help="index directory (default: $IMGREC_INDEX_DIR, else "
                             f"{Settings.from_env().index_dir})")
    parser.add_argument("--host", default=DEFAULT_HOST, metavar="ADDR",
                        help="address to listen on: 127.0.0.1 is this machine only, 0.0.0.0 "
                             "every network (anyone reaching the port sees the gallery) "
                             "(default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N",
                        help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        metavar="MB", help="largest accepted upload per file, in MB "
                                           "(default: %(default)s)")
    from imgrec.shard.cli import add_serve_option

    add_serve_option(parser)  # --ray ADDRESS, for a sharded --index


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (bound here, so a busy port is a one-line error)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _log_config() -> dict:
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["imgrec"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return cfg


def run(args: argparse.Namespace) -> int:
    """Serve the API until interrupted; returns the exit code (2: bad input, one line said)."""
    import uvicorn

    from imgrec.server.app import create_app
    from imgrec.settings import Settings

    index_dir = args.index or Settings.from_env().index_dir
    if not args.max_upload_mb > 0:
        print(f"imgrec: --max-upload-mb must be positive, got {args.max_upload_mb}",
              file=sys.stderr)
        return 2
    try:
        sock = _listen(args.host, args.port)
    except (OSError, OverflowError) as exc:
        why = getattr(exc, "strerror", None) or exc
        print(f"imgrec: cannot listen on {args.host}:{args.port}: {why}", file=sys.stderr)
        return 2
    # bound to this machine: answer only requests addressed to it (no DNS rebinding)
    hosts = (*LOOPBACK_NAMES, args.host) if _is_loopback(args.host) else None
    try:
        app = create_app(index_dir, max_upload=int(args.max_upload_mb * 1024 * 1024),
                         hosts=hosts, ray=getattr(args, "ray", None))
    except ImgrecError as exc:
        sock.close()
        print(f"imgrec: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"imgrec: serving {index_dir} at http://{shown}:{port} (API docs at /docs; "
          "Ctrl-C stops)", flush=True)
    if not _is_loopback(host):
        print(f"imgrec: warning: listening on {host}, not only this machine: whoever reaches "
              "the port can search the gallery and see its images", file=sys.stderr)
    config = uvicorn.Config(app, log_config=_log_config(), timeout_graceful_shutdown=5)
    # uvicorn re-raises Ctrl-C once it has shut down cleanly
    with sock, contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    return 0
