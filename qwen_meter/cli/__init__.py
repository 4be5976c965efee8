"""The ``qwen-meter`` command: one module per command group, wired in :mod:`.main`.

A face: it may use every layer and the other faces (report, gateway, integrations).
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
