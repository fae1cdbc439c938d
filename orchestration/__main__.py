"""`python -m orchestration`: the same CLI the Nox sessions call."""

import sys

try:
    from orchestration.cli import main

    code = main()
except KeyboardInterrupt:  # before the CLI's own handlers were in place: nothing started yet
    print("interrupted by SIGINT (Ctrl-C) before anything started", file=sys.stderr)
    code = 130
sys.exit(code)
