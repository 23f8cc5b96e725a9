"""``python -m logserver``: the same as the ``logserver`` console script."""

from logserver.cli import main

raise SystemExit(main())
