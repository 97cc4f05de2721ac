"""Where firing alerts go: a bounded alert log (file-backed, so every worker reads the
same one) and notifiers, of which the built-in one posts JSON to a webhook.

An alert is notified when it starts firing, not again while it keeps firing in the
following windows; once a window passes without it, it may notify again.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Protocol

import httpx

from fedctr.server.monitoring.detectors import Alert

log = logging.getLogger("fedctr.alerts")
KEEP = 500


class Notifier(Protocol):
    def send(self, alert: Alert) -> None: ...


class WebhookNotifier:
    """POSTs each alert as JSON (``{"service", "alert"}``); never raises into serving."""

    def __init__(self, url: str, *, timeout_s: float = 2.0, service: str = "fedctr") -> None:
        self.url, self.timeout_s, self.service = url, timeout_s, service
        self.sent = 0
        self.failures = 0

    def send(self, alert: Alert) -> None:
        try:
            r = httpx.post(
                self.url,
                json={"service": self.service, "alert": alert.to_json()},
                timeout=self.timeout_s,
            )
            r.raise_for_status()
            self.sent += 1
        except httpx.HTTPError as exc:
            self.failures += 1
            log.warning("alert webhook %s failed: %s", self.url, type(exc).__name__)


class AlertLog:
    """Recent alerts (at most ``KEEP``), appended to ``path`` as JSON lines when given."""

    def __init__(self, path: Path | None = None, notifiers: tuple[Notifier, ...] = ()) -> None:
        self.path = path
        self.notifiers = notifiers
        self._recent: deque[dict] = deque(maxlen=KEEP)
        self._firing: set[str] = set()

    def window(self, alerts: list[Alert]) -> list[Alert]:
        """Record one window's alerts; notify those that just started firing."""
        names = {a.name for a in alerts}
        fresh = [a for a in alerts if a.name not in self._firing]
        self._firing = names
        for alert in alerts:
            self._append(alert)
        for alert in fresh:
            log.warning("alert %s (%s): %s", alert.name, alert.severity, alert.summary)
            for notifier in self.notifiers:
                notifier.send(alert)
        return fresh

    def _append(self, alert: Alert) -> None:
        line = alert.to_json()
        self._recent.append(line)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
            if self.path.stat().st_size > 4 << 20:  # keep the file bounded too
                kept = self.path.read_text().splitlines()[-KEEP:]
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text("\n".join(kept) + "\n")
                os.replace(tmp, self.path)

    def recent(self, limit: int = 100) -> list[dict]:
        """Newest last; from the file when there is one (another worker may have written)."""
        if self.path is not None and self.path.exists():
            lines = self.path.read_text().splitlines()[-limit:]
            return [json.loads(line) for line in lines if line]
        return list(self._recent)[-limit:]


__all__ = ["AlertLog", "Notifier", "WebhookNotifier"]
