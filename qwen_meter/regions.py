"""The region a client talks to, from its endpoint URL.

``https://dashscope.aliyuncs.com/…`` is ``cn`` (Beijing, CNY prices), ``https://dashscope-intl.
aliyuncs.com/…`` is ``intl`` (Singapore, USD prices). The hosts come from the catalogue's
``defaults.regions[*].base_url``: the catalogue's own ``Catalogue.region_for_url`` is used when it
has one; otherwise this module reads those base URLs itself. Subdomains of a region's host
(``batch.dashscope.aliyuncs.com``) belong to that region. A host the catalogue does not list
(a proxy, a local test server, a deployment mode the catalogue does not model yet) gives None:
the meter then falls back to its default region.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit


def _host(url: str) -> str:
    return (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()


@cache
def _shipped_hosts() -> tuple[tuple[str, str], ...]:
    from ._data import data_dir, load_yaml

    doc = load_yaml(data_dir() / "models.yaml") or {}
    regions = (doc.get("defaults") or {}).get("regions") or {}
    return tuple((_host(str(raw["base_url"])), str(name)) for name, raw in regions.items()
                 if isinstance(raw, dict) and raw.get("base_url"))


def region_for_url(url: Any, catalogue: Any = None) -> str | None:
    """The catalogue region whose base URL has the same host as ``url``, or None."""
    if url is None:
        return None
    text = str(url)
    method = getattr(catalogue, "region_for_url", None)
    if method is not None:
        found: str | None = method(text)
        return found
    host = _host(text)
    if not host:
        return None
    for known, region in _shipped_hosts():
        if host == known or host.endswith("." + known):
            return region
    return None
