"""``python -m qwen_meter.cli``: the ``qwen-meter`` command."""

from .main import main

raise SystemExit(main())
