"""``python -m qwen_meter.testing``: serve the DashScope stand-in until interrupted.

Point a client at the printed base URLs (compatible mode for the openai SDK, native for the
dashscope SDK) with any API key: nothing leaves this machine.
"""

from __future__ import annotations

import threading

from .dashscope import FakeDashScope


def main() -> int:
    server = FakeDashScope()
    print(f"DashScope stand-in on {server.url}", flush=True)
    print(f"  compatible mode: {server.compatible}", flush=True)
    print(f"  native:          {server.native}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


raise SystemExit(main())
