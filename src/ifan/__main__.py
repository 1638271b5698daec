"""``python -m ifan`` (also what ``torchrun -m ifan train ...`` runs)."""

import sys

from ifan.cli import main

sys.exit(main())
