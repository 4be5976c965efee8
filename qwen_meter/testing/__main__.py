"""``python -m qwen_meter.testing [--host H] [--port P]``: serve the DashScope stand-in until
interrupted (Ctrl-C or SIGTERM).

Point a client at the printed base URLs (compatible mode for the openai SDK, native for the
dashscope SDK) with any API key: nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .dashscope import FakeDashScope


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qwen_meter.testing",
        description="Serve a local stand-in for DashScope (compatible-mode and native "
                    "endpoints) for offline tests; any API key is accepted.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0,
                        help="port (default 0: a free port, printed on start)")
    args = parser.parse_args(argv)
    try:
        server = FakeDashScope(args.host, args.port)
    except OSError as exc:
        print(f"qwen_meter.testing: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # A supervisor (a test, a CI step) stops it with SIGTERM: close the socket cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"DashScope stand-in on {server.url}", flush=True)
    print(f"  compatible mode: {server.compatible}", flush=True)
    print(f"  native:          {server.native}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
