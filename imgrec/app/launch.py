"""``imgrec app``: start the dashboard that ships inside the package (no checkout needed).

The checkout's ``make run`` reads ``.streamlit/config.toml``; an installed wheel has no such
file, so the same settings (:data:`SERVER_OPTIONS`, kept equal to that file by a test) are
passed to ``streamlit run`` as flags. Streamlit itself is imported only by the child process.

Example:
    >>> parser = argparse.ArgumentParser(prog="imgrec app")
    >>> add_arguments(parser)
    >>> command(parser.parse_args(["--port", "8600"]))[-4:]
    ['--server.port', '8600', '--server.address', '127.0.0.1']
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

#: The router script Streamlit runs (the same one the checkout's ``app.py`` calls).
ENTRY = Path(__file__).resolve().with_name("entry.py")
DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"

#: Everything ``.streamlit/config.toml`` sets except the address (its own flag), as
#: ``streamlit run`` flags.
SERVER_OPTIONS: dict[str, str | int | bool] = {
    "server.maxUploadSize": 50,
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    "server.headless": True,
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "minimal",
    "runner.magicEnabled": False,
    "theme.base": "light",
    "theme.primaryColor": "#3b5bdb",
    "theme.backgroundColor": "#ffffff",
    "theme.secondaryBackgroundColor": "#f3f5f9",
    "theme.textColor": "#1f2330",
    "theme.font": "sans-serif",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``imgrec app``."""
    parser.add_argument("--index", metavar="DIR", default=None,
                        help="index folder the dashboard opens (default: IMGREC_INDEX_DIR or "
                             "the data folder's index)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to serve on (default: %(default)s)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help="address to listen on (default: %(default)s, this machine "
                             "only; 0.0.0.0 serves every network interface, and the dashboard "
                             "has no login: set IMGREC_ALLOWED_ROOTS too)")
    from imgrec.shard.cli import add_serve_option

    add_serve_option(parser)  # --ray ADDRESS, for a sharded --index


def _flag(value: str | int | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line for ``args``."""
    flags = [f"--{name}={_flag(value)}" for name, value in SERVER_OPTIONS.items()]
    return [sys.executable, "-m", "streamlit", "run", str(ENTRY), *flags,
            "--server.port", str(args.port), "--server.address", str(args.address)]


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted (on POSIX this process becomes the server);
    returns the exit status.

    Raises:
        ValueError: a port outside 1-65535 or an index path that is a file.
    """
    if not 0 < int(args.port) < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    env = dict(os.environ)
    if args.index:
        index = Path(args.index).expanduser().resolve()
        if index.exists() and not index.is_dir():
            raise ValueError(f"--index {index} is a file, not a folder")
        env["IMGREC_INDEX_DIR"] = str(index)
    if getattr(args, "ray", None):
        from imgrec.shard.cli import RAY_ENV

        env[RAY_ENV] = args.ray
    print(f"imgrec dashboard: http://{'localhost' if args.address == DEFAULT_ADDRESS else args.address}"
          f":{args.port}", flush=True)
    cmd = command(args)
    if os.name == "posix":  # become the server: a signal to `imgrec app` reaches it, no orphan
        os.execve(cmd[0], cmd, env)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m imgrec.app.launch``: the same as ``imgrec app``."""
    parser = argparse.ArgumentParser(prog="imgrec app", description="Start the dashboard.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        print(f"imgrec app: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
