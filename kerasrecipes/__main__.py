"""`python -m kerasrecipes ...` runs the `kerasrecipes` command."""

import sys

from kerasrecipes.cli import main

if __name__ == "__main__":
    sys.exit(main())
