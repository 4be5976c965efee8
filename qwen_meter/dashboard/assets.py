"""The page's files as the dashboard serves them: ``index.html`` names each asset with its
content's digest (``assets/core.js?v=<digest>``), so a browser that kept one part of the page
(the scripts are ten files that must match each other) asks again for every part that changed,
and may keep a versioned one for good.

The page itself is never cached (``no-cache``); an asset asked for with its current digest is
``immutable``; without one (or with a stale one) it is kept an hour, as before versions.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

#: ``src="assets/..."`` / ``href="assets/..."`` in the page (relative, so ``/ui`` works too)
_REF = re.compile(r"""(\b(?:src|href)=["'])assets/([^"'?#]+)(["'])""", re.IGNORECASE)
PAGE_CACHE = b"no-cache"
VERSIONED_CACHE = b"public, max-age=31536000, immutable"
UNVERSIONED_CACHE = b"public, max-age=3600"
STALE_CACHE = b"no-cache"

_lock = threading.Lock()
#: path -> ((mtime_ns, size), digest): hashing ECharts' 1 MB once, not on every page load
_digests: dict[Path, tuple[tuple[int, int], str]] = {}


def digest(path: Path) -> str | None:
    """The first 16 hex digits of the file's SHA-256 (None: no such file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    mark = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        known = _digests.get(path)
    if known is not None and known[0] == mark:
        return known[1]
    try:
        value = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
    with _lock:
        _digests[path] = (mark, value)
    return value


def versioned_page(html: bytes, folder: Path) -> bytes:
    """``index.html`` with each asset it names carrying ``?v=<digest>`` (a name with no file
    is left as it is: the browser's request then gets the server's 404, which says which)."""

    def tag(match: re.Match[str]) -> str:
        parts = match.group(2).split("/")
        value = digest(folder.joinpath(*parts)) if ".." not in parts else None
        if value is None:
            return match.group(0)
        return f"{match.group(1)}assets/{match.group(2)}?v={value}{match.group(3)}"

    return _REF.sub(tag, html.decode("utf-8")).encode("utf-8")


def asset_cache(full_digest: str, version: str | None) -> bytes:
    """The ``cache-control`` of an asset (``full_digest``: its SHA-256 in hex) asked for with
    ``?v=version``, or without one."""
    if not version:
        return UNVERSIONED_CACHE
    return VERSIONED_CACHE if version == full_digest[:16] else STALE_CACHE
