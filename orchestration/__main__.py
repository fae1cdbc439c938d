"""`python -m orchestration`: the same CLI the Nox sessions call."""

import sys

from orchestration.cli import main

sys.exit(main())
