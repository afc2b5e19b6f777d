"""``python -m phase1 ...``: the command line (see ``phase1.cli``)."""

from __future__ import annotations

import sys

from phase1 import cli

if __name__ == "__main__":
    sys.exit(cli.main())
