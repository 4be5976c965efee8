"""Reading catalogue files safely, and the user's installed catalogue (update / rollback).

A catalogue can come from the network (``qwen-meter catalogue update --from URL``), so it is
read as hostile input (:func:`qwen_meter._data.parse_yaml`: a size cap, strict UTF-8, a cap
on YAML aliases checked before anything is built). A file that
fails any check — or the full validation in :mod:`qwen_meter.catalogue` — is refused whole with
a :class:`~qwen_meter.errors.CatalogueError`, and the installed catalogue stays as it was.

The installed catalogue lives in the user's config folder (``$QWEN_METER_CONFIG_DIR``, else
platformdirs' ``user_config_dir("qwen_meter")``) beside the bundled one, which is never
modified. The previous installed file is kept for :func:`rollback`.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from ..base.data import MAX_FILE_BYTES
from ..base.errors import CatalogueError

#: Environment variable naming the folder that holds the installed catalogue.
CONFIG_ENV = "QWEN_METER_CONFIG_DIR"
FETCH_TIMEOUT = 30.0
INSTALLED_NAME = "models.yaml"
PREVIOUS_NAME = "models.previous.yaml"


def config_dir() -> Path:
    """The user's qwen_meter config folder ($QWEN_METER_CONFIG_DIR overrides it)."""
    return _config_dir(os.environ.get(CONFIG_ENV) or None)


@functools.cache
def _config_dir(override: str | None) -> Path:
    # cached: default_catalogue() asks on every cost() call
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("qwen_meter"))


def installed_path() -> Path:
    """Where ``catalogue update`` installs a catalogue (it may not exist)."""
    return _installed(config_dir())


@functools.cache
def _installed(folder: Path) -> Path:
    return folder / INSTALLED_NAME


def previous_path() -> Path:
    return config_dir() / PREVIOUS_NAME


def fetch(source: str) -> bytes:
    """The bytes of a catalogue named by a path or an http(s) URL (size-capped)."""
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(source, headers={"User-Agent": "qwen-meter"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
                data: bytes = response.read(MAX_FILE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise CatalogueError(f"download failed: HTTP {exc.code}", file=source) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CatalogueError(f"download failed: {reason}", file=source) from None
        if len(data) > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=source)
        return data
    if "://" in source:
        raise CatalogueError("only http(s) URLs or local files", file=source)
    try:
        path = Path(source)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=source)
        return path.read_bytes()
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror or exc}", file=source) from None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(data: bytes) -> Path:
    """Install already-validated catalogue bytes; the current installed file becomes previous."""
    current = installed_path()
    if current.exists():
        _write_atomic(previous_path(), current.read_bytes())
    _write_atomic(current, data)
    return current


def rollback() -> Path | None:
    """Put the previous installed catalogue back (the replaced one becomes previous).

    After the first install there is no previous file: rolling back removes the installed one,
    so the bundled catalogue is used again (returns None).
    """
    current, previous = installed_path(), previous_path()
    if not previous.exists():
        if current.exists():
            current.unlink()
            return None
        raise CatalogueError("no installed catalogue to roll back", file=str(current))
    old = previous.read_bytes()
    if current.exists():
        _write_atomic(previous, current.read_bytes())
    else:
        previous.unlink()
    _write_atomic(current, old)
    return current
