"""``python -m ifan`` (also what ``torchrun -m ifan train ...`` runs)."""

import sys

from ifan.apps.cli import main

sys.exit(main())
