"""``python -m sidkit.cli``."""

import sys

from sidkit.cli import main

sys.exit(main())
