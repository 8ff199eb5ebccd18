"""systemd's notify protocol without a daemon or a library: READY=1, WATCHDOG=1 per judged frame, STATUS=.

A datagram to the socket named by $NOTIFY_SOCKET (an abstract one when it starts with "@"). With
`Type=notify` and `WatchdogSec=` in the unit, systemd restarts a service whose frames stop being judged: a
camera read that blocks for ever stops the pings, and the restart reopens the camera. Outside systemd
(no $NOTIFY_SOCKET) everything here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any, Optional


def _address(path: str) -> str:
    return "\0" + path[1:] if path.startswith("@") else path


class SystemdNotifier:
    """An inline sink; at most one WATCHDOG=1 per `min_interval_s` (cheap, but no need for 30 a second)."""

    inline = True
    name = "systemd"

    def __init__(self, socket_path: Optional[str] = None, min_interval_s: float = 0.1) -> None:
        self.path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self.min_interval_s = min_interval_s
        self.sent = 0
        self._last = 0.0
        self._sock: Optional[socket.socket] = None
        if self.path:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.connect(_address(self.path))
            except OSError:
                self._close_socket()

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, message: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.send(message.encode("utf-8"))
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def on_frame(self, j: Any) -> None:
        if j.invalid:  # an untrustworthy model is not inspection: no ping
            return
        now = time.monotonic()
        if now - self._last >= self.min_interval_s:
            self._last = now
            self.notify("WATCHDOG=1")

    def on_status(self, change: Any) -> None:
        self.notify(f"STATUS={change.status}: {change.reason}"[:400])

    def close(self) -> None:
        self.notify("STOPPING=1")
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
