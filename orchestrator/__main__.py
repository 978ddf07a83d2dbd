"""`python3 -m orchestrator`: the same as the vsa-orchestrate command."""

import sys

from orchestrator.cli import main

sys.exit(main())
