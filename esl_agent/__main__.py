"""`python -m esl_agent` hands over to the command line."""

from esl_agent.cli import main

raise SystemExit(main())
