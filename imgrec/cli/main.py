"""Command line: ``imgrec demo | index | search | watch | info | labels | duplicates | clusters |
graph | export`` (also ``python -m imgrec``)."""

from __future__ import annotations

import sys

from imgrec.cli import commands, info, insights
from imgrec.cli.output import os_error
from imgrec.cli.parser import EXIT_USAGE, build_parser
from imgrec.errors import ImgrecError

EXIT_OK, EXIT_FAIL = 0, 1
COMMANDS = {"demo": commands.demo, "index": commands.index, "search": commands.search,
            "serve": commands.serve, "evaluate": commands.evaluate, "app": commands.app,
            "shard": commands.shard,
            "watch": commands.watch,
            **info.COMMANDS, **insights.COMMANDS}


def _sharded_check(args: object) -> None:
    """Refuse, in one line, a command that cannot work on the sharded index it names."""
    from pathlib import Path

    given = getattr(args, "index", False)
    if given is None or isinstance(given, Path):
        from imgrec.shard.cli import refuse_sharded

        refuse_sharded(args.command, commands.index_dir(given), getattr(args, "shards", None))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad usage or input, 1 unexpected).

    Every error the user can act on is one line on stderr: imgrec's own errors, and
    operating-system errors (a file that cannot be read or written, a full disk) naming
    the path and the cause.
    """
    from imgrec.shard.cluster import ray_prints_to_stderr, stop_started

    args = build_parser().parse_args(argv)
    try:
        with ray_prints_to_stderr():  # stdout holds the results alone (--json parses)
            try:
                _sharded_check(args)
                return COMMANDS[args.command](args)
            finally:
                stop_started()  # a Ray this command started stops while still routed
    except ImgrecError as exc:
        print(f"imgrec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("imgrec: interrupted (an index build resumes where it stopped)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # unreadable input, unwritable output, a full disk, ...
        print(f"imgrec: {os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        import traceback

        traceback.print_exc()
        print("imgrec: unexpected failure (a bug); please report the traceback above",
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
