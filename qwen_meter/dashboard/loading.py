"""Views still being loaded: ``qwen-meter dashboard`` serves the page at once and loads the
log on a worker thread; until it is loaded the API answers ``503`` with what was read so far
(the page shows it as a progress message and asks again), rather than the server refusing
connections for the seconds a large log takes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("qwen_meter.dashboard")


class LoadingViews:
    """``load(progress)`` (a dict the load reports into) run on a daemon thread; :attr:`views`
    is its result once done, :attr:`error` what it raised."""

    def __init__(self, load: Callable[[dict[str, Any]], Any], label: str) -> None:
        self.label = label
        self.progress: dict[str, Any] = {}
        self.views: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.done = threading.Event()
        self._load = load
        self._thread = threading.Thread(target=self._run, name="qwen-meter-dashboard-load",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.views = self._load(self.progress)
        except BaseException as exc:  # said on every API answer, and in the server's log
            self.error = exc
            log.error("the dashboard could not load %s: %s", self.label, exc)
        finally:
            self.done.set()

    def state(self) -> dict[str, Any]:
        """What the API says while loading."""
        return {"loading": True, "source": self.progress.get("source", self.label),
                "done": int(self.progress.get("done", 0)),
                "total": int(self.progress.get("total", 0)),
                "seconds": round(time.monotonic() - self.started, 1)}

    def wait(self, timeout: float | None = None) -> Any:
        """The views once loaded (raises what the load raised)."""
        self.done.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.views
