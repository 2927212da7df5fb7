"""`python -m benchmarks --out BENCHMARKS.md [--quick]`."""

from benchmarks.run import main

raise SystemExit(main())
