"""`python -m analysis ...`: the analysis commands without the rest of agentsweep."""

import sys

from analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
