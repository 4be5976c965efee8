"""The region a client talks to, from its endpoint URL.

``https://dashscope.aliyuncs.com/…`` is ``cn`` (Beijing, CNY prices), ``https://dashscope-intl.
aliyuncs.com/…`` is ``intl`` (Singapore, USD prices), and so on for every deployment region
the catalogue lists: the mapping itself is :meth:`Catalogue.region_for_url`, from each region's
``base_url`` and ``hosts``. A host the catalogue does not list (a proxy, a local test server)
gives None: the meter then falls back to its default region.
"""

from __future__ import annotations

from typing import Any


def region_for_url(url: Any, catalogue: Any = None) -> str | None:
    """The region of ``catalogue`` (default: the default catalogue) that ``url`` points at."""
    if url is None:
        return None
    if catalogue is None:
        from .core import default_catalogue

        catalogue = default_catalogue()
    found: str | None = catalogue.region_for_url(str(url))
    return found
