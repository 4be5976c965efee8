"""``python -m qwen_meter``: the ``qwen-meter`` command."""

from .cli.main import main

raise SystemExit(main())
