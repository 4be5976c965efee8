"""Test helpers for code that meters DashScope calls: a DashScope stand-in on 127.0.0.1.

:class:`FakeDashScope` answers like DashScope's compatible-mode and native endpoints (bodies,
event streams, usage placement, error bodies), so metered code — the openai or dashscope SDKs,
LangChain, the gateway — can be tested offline; ``python -m qwen_meter.testing`` serves it.

A face: it uses qwen_meter's own counting to fill in usage; nothing else imports it.
"""

from .dashscope import PIECES, REASONING, REPLY, FakeDashScope

__all__ = ["PIECES", "REASONING", "REPLY", "FakeDashScope"]
