"""``python -m tools.gpucheck``: see :mod:`tools.gpucheck.cli`."""

from tools.gpucheck.cli import main

raise SystemExit(main())
