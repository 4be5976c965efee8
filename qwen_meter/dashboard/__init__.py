"""The web dashboard (``qwen-meter dashboard``, and the gateway's ``/ui``): a plain ASGI app
serving the page of ``data/dashboard`` and the JSON API over :mod:`qwen_meter.report.views`;
:mod:`.loading` lets it serve the page (and a 503 "loading" API) while the records load;
:mod:`.assets` names each of the page's files by its digest, so browsers never mix versions.
"""

from __future__ import annotations

from .app import DashboardApp, dashboard_app

__all__ = ["DashboardApp", "dashboard_app"]
