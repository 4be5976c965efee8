"""The gateway's configuration: a YAML (or JSON) file, validated at start.

Every mistake is reported as :class:`~qwen_meter.errors.GatewayConfigError` naming the file and
the field (``keys[2].rpm``), so a gateway never starts half-configured. Without a file the
embedded default applies: memory store, 127.0.0.1, upstream ``https://dashscope.aliyuncs.com``,
no virtual keys (the client's own ``Authorization`` is forwarded as is).

Example::

    store: redis://127.0.0.1:6379/0
    store_timeout: 1.0            # per round trip; store_policy: fail_closed (503) | fail_open
    store_retry_after: 1          # the 503's Retry-After while the store fails (s; default 1)
    log: /var/log/qwen-meter/gw-1.jsonl
    upstreams:
      default: {url: https://dashscope.aliyuncs.com, region: cn, api_key_env: DASHSCOPE_API_KEY}
      intl: {url: https://dashscope-intl.aliyuncs.com, region: intl, api_key_file: /run/secrets/k}
    budgets: [{name: all, limit: 500 CNY, per: month}]
    ledger: postgresql://meter@db/meter   # a fleet: records, keys, budgets (else sqlite:///…)
    admin_token_env: QWEN_METER_ADMIN_TOKEN  # the admin API under /admin (needs a ledger)
    keys:
      - name: search-team
        hash: sha256:...          # written by `qwen-meter serve keys add`
        user: search
        tags: [team=search]
        rpm: 60
        tpm: 200000
        models: [qwen-plus, qwen-flash]
        budgets: [{name: daily, limit: 20 CNY, per: day}]
        headers: [X-DashScope-WorkSpace]   # account headers this key may send (gateway.headers)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..alerts.config import AlertsConfig, parse_alerts
from ..base.errors import GatewayConfigError
from ..limits.budget.periods import CALENDAR_PERIODS
from .config_fields import Fields

DEFAULT_UPSTREAM = "https://dashscope.aliyuncs.com"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
REGIONS = ("cn", "intl")
STORE_POLICIES = ("fail_closed", "fail_open")
PERIODS = CALENDAR_PERIODS
LEDGER_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


@dataclass(frozen=True)
class UpstreamConfig:
    """Where calls go and with which real key (read from the environment or a secret file)."""

    name: str
    url: str
    region: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None

    def api_key(self, file: str | None = None) -> str | None:
        """The real DashScope key, or None when the client's own key is forwarded."""
        if self.api_key_env:
            value = os.environ.get(self.api_key_env, "").strip()
            if not value:
                raise GatewayConfigError(f"environment variable {self.api_key_env} is not set",
                                         file=file, field=f"upstreams.{self.name}.api_key_env")
            return value
        if self.api_key_file:
            try:
                value = Path(self.api_key_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise GatewayConfigError(f"cannot read the key file ({exc.strerror})",
                                         file=file,
                                         field=f"upstreams.{self.name}.api_key_file") from None
            if not value:
                raise GatewayConfigError("the key file is empty", file=file,
                                         field=f"upstreams.{self.name}.api_key_file")
            return value
        return None


@dataclass(frozen=True)
class BudgetConfig:
    """A spending limit: global (top level) or per virtual key."""

    name: str
    limit: str
    per: str | None = None
    mode: str = "hard"


@dataclass(frozen=True)
class KeyConfig:
    """A virtual key and its tenant. Only the key's hash is stored."""

    name: str
    hash: str
    prefix: str = ""
    user: str | None = None
    tags: tuple[str, ...] = ()
    upstream: str = "default"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    budgets: tuple[BudgetConfig, ...] = ()
    revoked: bool = False
    created: str | None = None
    #: account-level client headers this key may send upstream (``X-DashScope-WorkSpace`` …)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``qwen-meter serve`` needs; see the module docs for the file format."""

    file: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    store: str = "memory://"
    log: str | None = None
    upstreams: Mapping[str, UpstreamConfig] = field(
        default_factory=lambda: {"default": UpstreamConfig("default", DEFAULT_UPSTREAM)})
    region: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    preflight: bool = True
    account_limits: bool = False
    limiter_wait: float = 0.0
    timeout: float = 600.0
    shutdown_timeout: float = 30.0
    budgets: tuple[BudgetConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()
    headers: tuple[str, ...] = ()  # client headers forwarded for everyone (gateway.headers)
    body_timeout: float = 30.0  # seconds for a whole body (gateway.bodies)
    max_body_reads_per_client: int = 64  # 0: no cap
    store_timeout: float | None = None  # None: the store's own (Redis 1 s, SQLite 5 s)
    store_policy: str = "fail_closed"  # or fail_open (docs/guides/gateway.md)
    #: the 503's Retry-After when the store fails, unless its circuit breaker says longer
    store_retry_after: float = 1.0
    #: ``sqlite:///…`` or ``postgresql://…``: records, keys and budgets shared by a fleet
    ledger: str | None = None
    #: the environment variable holding the admin API's token (None: no admin API)
    admin_token_env: str | None = None
    #: webhooks on budget thresholds, limiter saturation, upstream errors (qwen_meter.alerts)
    alerts: AlertsConfig | None = None

    @property
    def virtual_keys(self) -> bool:
        """True when clients must present a gateway key (the config lists keys, or a ledger
        holds them)."""
        return bool(self.keys) or self.ledger is not None


def default_config(upstream: str | None = None) -> GatewayConfig:
    """The embedded default: memory store, 127.0.0.1 only, no virtual keys."""
    return GatewayConfig(upstreams={"default": UpstreamConfig("default",
                                                              upstream or DEFAULT_UPSTREAM)})


# --- reading --------------------------------------------------------------------------------

_Fields = Fields  # the name the readers here and elsewhere in the gateway use

def _budget(data: Any, path: str, file: str | None, default_name: str) -> BudgetConfig:
    from ..catalogue.records import CURRENCIES
    from ..limits.budget.money import parse_money

    f = _Fields(data, path, file)
    f.only(("name", "limit", "per", "mode"))
    limit = f.data.get("limit")
    if limit is None:
        raise f.fail("limit", "is required (e.g. '20 CNY')")
    try:
        amount, currency = parse_money(limit)
    except ValueError as exc:
        raise f.fail("limit", str(exc)) from None
    if amount < 0 or currency not in CURRENCIES:
        raise f.fail("limit", f"must be an amount >= 0 with a currency "
                              f"({', '.join(CURRENCIES)}), e.g. '20 CNY'; got {limit!r}")
    return BudgetConfig(name=f.text("name", default_name) or default_name,
                        limit=f"{amount} {currency}",
                        per=f.choice("per", (None, *PERIODS), None),
                        mode=f.choice("mode", ("hard", "soft"), "hard") or "hard")


def _upstream(name: str, data: Any, path: str, file: str | None) -> UpstreamConfig:
    f = _Fields(data, path, file)
    f.only(("url", "region", "api_key_env", "api_key_file"))
    url = f.text("url", DEFAULT_UPSTREAM) or DEFAULT_UPSTREAM
    if not url.startswith(("http://", "https://")):
        raise f.fail("url", f"must start with http:// or https://, not {url!r}")
    key_env, key_file = f.text("api_key_env"), f.text("api_key_file")
    if key_env and key_file:
        raise f.fail("api_key_file", "give api_key_env or api_key_file, not both")
    return UpstreamConfig(name, url.rstrip("/"), f.choice("region", (None, *REGIONS), None),
                          key_env, key_file)


def _key(data: Any, path: str, file: str | None, upstreams: Mapping[str, UpstreamConfig]
         ) -> KeyConfig:
    f = _Fields(data, path, file)
    f.only(("name", "hash", "prefix", "user", "tags", "upstream", "rpm", "tpm", "models",
            "budgets", "revoked", "created", "headers"))
    name = f.text("name", required=True) or ""
    digest = f.text("hash", required=True) or ""
    if not digest.startswith("sha256:") or len(digest) != 7 + 64:
        raise f.fail("hash", "must be 'sha256:' and 64 hex digits (from `serve keys add`)")
    upstream = f.text("upstream", "default") or "default"
    if upstream not in upstreams:
        raise f.fail("upstream", f"names no upstream (known: {', '.join(upstreams)})")
    tags = f.strings("tags") or ()
    for tag in tags:
        if tag.startswith("key="):
            raise f.fail("tags", "the tag key= is the gateway's own (the key's name)")
    budgets = tuple(_budget(item, where, file, f"{name}-{n}")
                    for n, (where, item) in enumerate(f.items("budgets")))
    return KeyConfig(name=name, hash=digest.lower(), prefix=f.text("prefix") or "",
                     user=f.text("user"), tags=tags, upstream=upstream,
                     rpm=f.whole("rpm", None), tpm=f.whole("tpm", None),
                     models=f.strings("models"), budgets=budgets,
                     revoked=f.flag("revoked", False), created=f.text("created"),
                     headers=f.header_names("headers"))


def parse_config(data: Any, file: str | None = None) -> GatewayConfig:
    """A validated :class:`GatewayConfig` from the file's parsed content."""
    if data is None:
        data = {}
    f = _Fields(data, "", file)
    f.only(("host", "port", "store", "log", "upstreams", "region", "max_body_bytes",
            "preflight", "account_limits", "limiter_wait", "timeout", "shutdown_timeout",
            "budgets", "keys", "headers", "body_timeout", "max_body_reads_per_client",
            "store_timeout", "store_policy", "store_retry_after", "ledger", "admin_token_env",
            "alerts"))
    raw_upstreams = f.data.get("upstreams") or {"default": {}}
    if not isinstance(raw_upstreams, Mapping):
        raise f.fail("upstreams", "must be a mapping of names to {url, region, api_key_env}")
    upstreams = {str(name): _upstream(str(name), item, f"upstreams.{name}", file)
                 for name, item in raw_upstreams.items()}
    if "default" not in upstreams:
        raise f.fail("upstreams", "needs one named 'default'")
    store = f.text("store", "memory://") or "memory://"
    if not store.startswith(("memory:", "sqlite:", "redis:", "rediss:", "unix:")):
        raise f.fail("store", f"must be memory://, sqlite:///file or redis://host, not {store!r}")
    keys = tuple(_key(item, where, file, upstreams) for where, item in f.items("keys"))
    seen: dict[str, str] = {}
    for n, key in enumerate(keys):
        for value, what in ((key.name, "name"), (key.hash, "hash")):
            if value in seen:
                raise GatewayConfigError(f"duplicate {what} (also {seen[value]})", file=file,
                                         field=f"keys[{n}].{what}")
            seen[value] = f"keys[{n}]"
    ledger, admin_token_env = _fleet(f)
    if keys or ledger:
        for upstream in upstreams.values():
            if not (upstream.api_key_env or upstream.api_key_file):
                raise GatewayConfigError(
                    "with virtual keys the gateway calls DashScope with its own key: set "
                    "api_key_env or api_key_file", file=file, field=f"upstreams.{upstream.name}")
    budgets = tuple(_budget(item, where, file, f"global-{n}")
                    for n, (where, item) in enumerate(f.items("budgets")))
    return GatewayConfig(
        file=file, host=f.text("host", DEFAULT_HOST) or DEFAULT_HOST,
        port=f.whole("port", DEFAULT_PORT, low=0) or 0, store=store, log=f.text("log"),
        upstreams=upstreams, region=f.choice("region", (None, *REGIONS), None),
        max_body_bytes=f.whole("max_body_bytes", 10 * 1024 * 1024) or 1,
        preflight=f.flag("preflight", True), account_limits=f.flag("account_limits", False),
        limiter_wait=f.seconds("limiter_wait", 0.0), timeout=f.seconds("timeout", 600.0),
        shutdown_timeout=f.seconds("shutdown_timeout", 30.0), budgets=budgets, keys=keys,
        headers=f.header_names("headers"),
        body_timeout=_positive(f, "body_timeout", 30.0),
        max_body_reads_per_client=f.whole("max_body_reads_per_client", 64, low=0) or 0,
        store_timeout=None if f.data.get("store_timeout") is None
        else _positive(f, "store_timeout", 1.0),
        store_policy=f.choice("store_policy", STORE_POLICIES, "fail_closed") or "fail_closed",
        store_retry_after=_positive(f, "store_retry_after", 1.0),
        ledger=ledger, admin_token_env=admin_token_env,
        alerts=parse_alerts(f.data.get("alerts"), file))


def _positive(f: _Fields, key: str, default: float) -> float:
    value = f.seconds(key, default)
    if value <= 0:
        raise f.fail(key, f"must be a number of seconds > 0, not {value!r}")
    return value


def _fleet(f: _Fields) -> tuple[str | None, str | None]:
    """``ledger`` and ``admin_token_env``: where a fleet keeps its keys, and the admin API."""
    ledger = f.text("ledger")
    if ledger is not None and not ledger.startswith(LEDGER_SCHEMES):
        raise f.fail("ledger", "must be sqlite:///path/to/ledger.db or "
                               f"postgresql://user@host/db, not {_no_password(ledger)!r}")
    token_env = f.text("admin_token_env")
    if token_env is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
            raise f.fail("admin_token_env", "must name an environment variable "
                                            f"(e.g. QWEN_METER_ADMIN_TOKEN), not {token_env!r}")
        if ledger is None:
            raise f.fail("admin_token_env", "the admin API keeps keys and budgets in a "
                                            "ledger: set ledger (sqlite:///… or postgresql://…)")
    return ledger, token_env


def _no_password(url: str) -> str:
    """A URL as it may be shown: ``user:secret@host`` becomes ``user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def read_file(path: str | os.PathLike[str]) -> Any:
    """The parsed content of a config file (YAML, of which JSON is a subset), read as the
    catalogue's override files are (UTF-8, size and alias caps)."""
    from ..base.data import load_yaml
    from ..base.errors import CatalogueError

    try:
        return load_yaml(Path(path))
    except CatalogueError as exc:
        # the gateway's own wording for a syntax error, as its error table documents it
        reason = exc.reason.replace("malformed YAML", "not valid YAML", 1)
        raise GatewayConfigError(reason, file=str(path)) from None


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a config file."""
    return parse_config(read_file(path), str(path))


def write_file(path: str | os.PathLike[str], data: Any) -> None:
    """Write a config back (JSON for ``.json`` files, else YAML), replacing it atomically."""
    import yaml

    target = Path(path)
    if target.suffix.lower() == ".json":
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, target)
