"""`python -m tke_playbook.localserver ...` runs the local embedding server in the foreground."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
