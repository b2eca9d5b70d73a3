"""``python -m imgrec`` runs the command line."""

import sys

from imgrec.cli.main import main

sys.exit(main())
