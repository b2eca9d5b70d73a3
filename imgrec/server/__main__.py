"""``python -m imgrec.server``: the API server on its own (the same as ``imgrec serve``)."""

import argparse
import sys

from imgrec.server import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m imgrec.server",
                                 description="Serve the imgrec HTTP API over one index.")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
