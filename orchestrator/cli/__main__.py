"""`python -m orchestrator.cli ARGS...` = `rlo ARGS...`."""

import sys

from . import main

sys.exit(main())
