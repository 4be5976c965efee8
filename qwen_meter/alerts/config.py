"""The ``alerts:`` section of the gateway config, read and checked; every mistake is a
:class:`~qwen_meter.errors.GatewayConfigError` naming the file and the field
(``alerts[1].format``). Either a list of channels::

    alerts:
      - {name: ops-dingtalk, format: dingtalk, url_env: DINGTALK_WEBHOOK,
         secret_env: DINGTALK_SECRET, lang: zh, on: [budget, limiter, errors],
         thresholds: [50, 80, 100]}
      - {name: slack, format: slack, url: "https://hooks.slack.com/services/...", lang: en}

or a mapping with the channels and the rules' and sender's settings::

    alerts:
      channels: [...]
      rules: {limiter_percent: 90, error_percent: 20, error_calls: 20, error_seconds: 300,
              error_min_calls: 5, repeat: hour}
      tries: 5          # attempts per webhook before giving up
      backoff: 1.0      # seconds before the 2nd try; doubled each time (with jitter)
      timeout: 10       # seconds per attempt
      queue_size: 1000
      check_every: 0.25 # seconds: one budget's figures are read at most this often

URLs and secrets named by ``url_env`` / ``secret_env`` are read when the gateway starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import GatewayConfigError
from ..limits.budget.periods import CALENDAR_PERIODS
from .delivery import DEFAULT_THRESHOLDS, Channel
from .events import KINDS, LANGS
from .formats import FORMATS, STYLES
from .rules import AlertRules

CHANNEL_FIELDS = ("name", "format", "url", "url_env", "secret", "secret_env", "lang", "style",
                  "on", "thresholds")
SECTION_FIELDS = ("channels", "rules", "tries", "backoff", "timeout", "queue_size",
                  "check_every")
RULE_FIELDS = ("limiter_percent", "limiter_refusals", "error_percent", "error_calls",
               "error_seconds", "error_min_calls", "repeat")
REPEATS = CALENDAR_PERIODS


@dataclass(frozen=True)
class ChannelConfig:
    """A channel as written in the file (URL and secret possibly still in the environment)."""

    name: str
    format: str
    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    lang: str = "en"
    style: str | None = None
    on: tuple[str, ...] = KINDS
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    where: str = ""

    def __repr__(self) -> str:  # the URL and secret carry credentials
        return f"ChannelConfig(name={self.name!r}, format={self.format!r}, lang={self.lang!r})"

    def channel(self, file: str | None = None) -> Channel:
        """The ready :class:`Channel`, its URL and secret read from the environment now."""
        url = self.url or _env(self.url_env, file, f"{self.where}.url_env")
        secret = self.secret or (_env(self.secret_env, file, f"{self.where}.secret_env")
                                 if self.secret_env else None)
        if not url.startswith(("http://", "https://")):
            raise GatewayConfigError(f"environment variable {self.url_env} must hold an "
                                     "http:// or https:// URL", file=file,
                                     field=f"{self.where}.url_env")
        return Channel(self.name, self.format, url, secret, self.lang, self.style, self.on,
                       self.thresholds)


@dataclass(frozen=True)
class AlertsConfig:
    channels: tuple[ChannelConfig, ...]
    rules: AlertRules = field(default_factory=AlertRules)
    tries: int = 5
    backoff: float = 1.0
    timeout: float = 10.0
    queue_size: int = 1000
    check_every: float = 0.25

    def ready_channels(self, file: str | None = None) -> list[Channel]:
        return [c.channel(file) for c in self.channels]


def _env(name: str | None, file: str | None, field: str) -> str:
    value = os.environ.get(name or "", "").strip()
    if not value:
        raise GatewayConfigError(f"environment variable {name} is not set", file=file,
                                 field=field)
    return value


class _Reader:
    def __init__(self, data: Any, where: str, file: str | None, known: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise GatewayConfigError(f"must be a mapping, not {type(data).__name__}", file=file,
                                     field=where)
        self.data, self.where, self.file = data, where, file
        for key in data:
            if key not in known:
                raise self.fail(str(key), f"unknown field (known: {', '.join(known)})")

    def fail(self, key: str, message: str) -> GatewayConfigError:
        return GatewayConfigError(message, file=self.file, field=f"{self.where}.{key}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str | None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and value not in options:
            raise self.fail(key, f"must be one of {', '.join(options)}, not {value!r}")
        return None if value is None else str(value)

    def number(self, key: str, default: float | None, *, low: float = 0.0,
               high: float | None = None, whole: bool = False, empty: bool = False
               ) -> float | None:
        value = self.data.get(key, default)
        if value is None and empty:
            return None
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and value >= low
              and (high is None or value <= high) and (not whole or isinstance(value, int)))
        if not ok:
            kind = "a whole number" if whole else "a number"
            span = f">= {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise self.fail(key, f"must be {kind} {span}, not {value!r}")
        return float(value) if value is not None else None

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value


def _channel(data: Any, where: str, file: str | None) -> ChannelConfig:
    r = _Reader(data, where, file, CHANNEL_FIELDS)
    name = r.text("name")
    if name is None:
        raise r.fail("name", "is required")
    fmt = r.choice("format", FORMATS, None)
    if fmt is None:
        raise r.fail("format", f"is required (one of {', '.join(FORMATS)})")
    url, url_env = r.text("url"), r.text("url_env")
    if (url is None) == (url_env is None):
        raise r.fail("url", "give url or url_env (the name of a variable holding it), one")
    if url is not None and not url.startswith(("http://", "https://")):
        raise r.fail("url", f"must start with http:// or https://, not {url[:40]!r}")
    secret, secret_env = r.text("secret"), r.text("secret_env")
    if secret is not None and secret_env is not None:
        raise r.fail("secret", "give secret or secret_env, not both")
    raw_on = r.data.get("on", list(KINDS))
    if (not isinstance(raw_on, list) or not raw_on
            or not all(isinstance(k, str) and k in KINDS for k in raw_on)):
        raise r.fail("on", f"must be a list of {', '.join(KINDS)}, not {raw_on!r}")
    raw = r.data.get("thresholds", list(DEFAULT_THRESHOLDS))
    if (not isinstance(raw, list) or not raw or not all(
            not isinstance(t, bool) and isinstance(t, (int, float)) and 0 < t <= 1000
            for t in raw)):
        raise r.fail("thresholds", "must be a list of percentages of the limit, e.g. "
                                   f"[50, 80, 100], not {raw!r}")
    return ChannelConfig(name=name, format=fmt, url=url, url_env=url_env, secret=secret,
                         secret_env=secret_env, lang=r.choice("lang", LANGS, "en") or "en",
                         style=r.choice("style", STYLES[fmt], None), on=tuple(raw_on),
                         thresholds=tuple(sorted({float(t) for t in raw})), where=where)


def _rules(data: Any, file: str | None) -> AlertRules:
    if data is None:
        return AlertRules()
    r = _Reader(data, "alerts.rules", file, RULE_FIELDS)
    d = AlertRules()
    return AlertRules(
        limiter_percent=r.number("limiter_percent", d.limiter_percent, low=1, high=100,
                                 empty=True),
        limiter_refusals=r.flag("limiter_refusals", d.limiter_refusals),
        error_percent=r.number("error_percent", d.error_percent, low=1, high=100, empty=True),
        error_calls=int(r.number("error_calls", d.error_calls, low=1, whole=True) or 1),
        error_seconds=r.number("error_seconds", d.error_seconds, low=1) or 1.0,
        error_min_calls=int(r.number("error_min_calls", d.error_min_calls, low=1,
                                     whole=True) or 1),
        repeat=r.choice("repeat", REPEATS, d.repeat) or d.repeat)


def parse_alerts(data: Any, file: str | None = None) -> AlertsConfig | None:
    """The ``alerts:`` section checked (None: no section, no alerts)."""
    if data is None:
        return None
    section: Mapping[str, Any]
    if isinstance(data, list):
        section = {"channels": data}
    elif isinstance(data, Mapping):
        _Reader(data, "alerts", file, SECTION_FIELDS)
        section = data
    else:
        raise GatewayConfigError("must be a list of channels or a mapping with channels:",
                                 file=file, field="alerts")
    where = "alerts.channels" if isinstance(data, Mapping) else "alerts"
    raw = section.get("channels")
    if not isinstance(raw, list) or not raw:
        raise GatewayConfigError("must list at least one channel", file=file, field=where)
    channels = tuple(_channel(item, f"{where}[{n}]", file) for n, item in enumerate(raw))
    seen: dict[str, int] = {}
    for n, channel in enumerate(channels):
        if channel.name in seen:
            raise GatewayConfigError(f"duplicate name (also {where}[{seen[channel.name]}])",
                                     file=file, field=f"{where}[{n}].name")
        seen[channel.name] = n
    r = _Reader(section, "alerts", file, SECTION_FIELDS)
    return AlertsConfig(
        channels, _rules(section.get("rules"), file),
        tries=int(r.number("tries", 5, low=1, whole=True) or 5),
        backoff=r.number("backoff", 1.0, low=0) or 0.0,
        timeout=r.number("timeout", 10.0, low=0.1) or 10.0,
        queue_size=int(r.number("queue_size", 1000, low=1, whole=True) or 1000),
        check_every=r.number("check_every", 0.25, low=0, high=60) or 0.0)
