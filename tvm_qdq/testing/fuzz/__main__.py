"""``python -m tvm_qdq.testing.fuzz``: see :func:`.cli.main`."""

from .cli import main

raise SystemExit(main())
