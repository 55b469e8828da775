"""``python -m stack up|down|status [--cluster]`` (what ``make up`` / ``make down`` run)."""

import sys

from stack.control import main

sys.exit(main())
