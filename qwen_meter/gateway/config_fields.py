"""Typed access to one mapping of the gateway's config file, naming the file and the field
(``keys[2].rpm``) on every mistake: the reading half of :mod:`.config`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..base.errors import GatewayConfigError


class Fields:
    """Typed access to one mapping of the file, naming ``file`` and the field on mistakes."""

    def __init__(self, data: Any, path: str, file: str | None) -> None:
        if not isinstance(data, Mapping):
            raise GatewayConfigError(f"must be a mapping, not {type(data).__name__}",
                                     file=file, field=path or None)
        self.data = data
        self.path = path
        self.file = file

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> GatewayConfigError:
        return GatewayConfigError(message, file=self.file, field=self.where(key))

    def only(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key not in known:
                raise self.fail(str(key), f"unknown field (known: {', '.join(known)})")

    def text(self, key: str, default: str | None = None, *, required: bool = False
             ) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def choice(self, key: str, options: Sequence[str | None], default: str | None) -> str | None:
        value = self.data.get(key, default)
        if value not in options:
            raise self.fail(key, f"must be one of {', '.join(map(str, options))}, not {value!r}")
        return None if value is None else str(value)

    def whole(self, key: str, default: int | None, *, low: int = 1) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"must be a whole number >= {low}, not {value!r}")
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(key, f"must be a number of seconds >= 0, not {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def header_names(self, key: str) -> tuple[str, ...]:
        from .headers import name_problem

        names = self.strings(key) or ()
        for problem in filter(None, map(name_problem, names)):
            raise self.fail(key, problem)
        return names

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def items(self, key: str) -> list[tuple[str, Any]]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, "must be a list")
        return [(f"{self.where(key)}[{n}]", item) for n, item in enumerate(value)]
