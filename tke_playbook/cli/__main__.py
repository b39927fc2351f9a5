"""``python -m tke_playbook.cli ...``: the same as the ``tke-playbook`` command."""

import sys

from .commands import main

sys.exit(main())
