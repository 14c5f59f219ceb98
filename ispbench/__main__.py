"""``python -m ispbench`` is the same as the ``ispbench`` command."""

import sys

from ispbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
