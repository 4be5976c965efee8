"""Alerts that reach people: budget thresholds, limiter saturation and upstream error rates sent
as webhooks (DingTalk, Feishu/Lark, WeCom, Slack, plain JSON), in the background, once each.

:class:`AlertObserver` watches a :class:`~qwen_meter.meter.Meter` (the gateway uses the same
one); :mod:`.rules` decides when, :mod:`.claims` who sends (once across processes),
:mod:`.formats` what the POST says, :mod:`.sender` delivers it off the caller's time.
"""

from __future__ import annotations

from .claims import CachedClaims, LedgerClaims, MemoryClaims, StoreClaims, claims_for
from .config import AlertsConfig, ChannelConfig, parse_alerts
from .delivery import Channel, judge
from .events import Alert, AlertDeliveryWarning
from .formats import FORMATS, JSON_SCHEMA, Outgoing, dingtalk_sign, feishu_sign, render
from .observer import AlertObserver
from .rules import AlertRules
from .sender import AlertSender, Outcome

__all__ = ["FORMATS", "JSON_SCHEMA", "Alert", "AlertDeliveryWarning", "AlertObserver",
           "AlertRules", "AlertSender", "AlertsConfig", "CachedClaims", "Channel",
           "ChannelConfig", "LedgerClaims", "MemoryClaims", "Outcome", "Outgoing",
           "StoreClaims", "claims_for", "dingtalk_sign", "feishu_sign", "judge",
           "parse_alerts", "render"]
