"""The web dashboard (``qwen-meter dashboard``, and the gateway's ``/ui``): a plain ASGI app
serving the page of ``data/dashboard`` and the JSON API over :mod:`qwen_meter.report.views`.
"""

from __future__ import annotations

from .app import DashboardApp, dashboard_app

__all__ = ["DashboardApp", "dashboard_app"]
