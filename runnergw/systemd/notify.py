"""systemd's notify protocol, spoken on ``$NOTIFY_SOCKET``.

The service manager (``Type=notify``) learns from these datagrams when the gateway is ready
(``READY=1``), reloading (``RELOADING=1``), stopping (``STOPPING=1``) and alive
(``WATCHDOG=1``), and shows the ``STATUS=`` line in ``systemctl status``. Every message is one
datagram of ``NAME=value`` lines sent to a unix datagram socket; a name that starts with ``@``
is an abstract socket. A datagram to a local socket is queued by the kernel at once, so a
non-blocking send is all the reactor needs. Without ``$NOTIFY_SOCKET`` nothing is sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from runnergw.logs import level_gate

__all__ = ["STATUS_INTERVAL", "Notifier", "monotonic_usec", "notify_address",
           "watchdog_interval"]

STATUS_INTERVAL = 5.0
"""Seconds between two looks at the status line (sent only when it changed)."""


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket ``$NOTIFY_SOCKET`` names: an absolute path, or ``@name`` for the abstract
    socket ``\\0name``; ``None`` when unset, empty or of another kind (such as ``vsock:``)."""
    value = environ.get("NOTIFY_SOCKET", "")
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, as systemd advises;
    ``None`` when no watchdog is asked for, or when ``$WATCHDOG_PID`` names another process
    (the variables were inherited, the watchdog is someone else's)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    return usec / 2 / 1_000_000


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock ``MONOTONIC_USEC`` is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _status_line(text: str) -> str:
    """A status as one line: a newline would start another field of the message."""
    return "STATUS=" + " ".join(text.splitlines())


class Notifier:
    """Tells the service manager what the gateway is doing.

    Sends nothing when ``address`` is ``None``. A send that fails (the manager went away, its
    queue is full) is logged once and otherwise ignored: the gateway serves on.
    """

    log = Logger(observer=level_gate)

    def __init__(self, address: str | None, clock: Any, *,
                 watchdog: float | None = None,
                 monotonic: Callable[[], int] = monotonic_usec,
                 status_interval: float = STATUS_INTERVAL) -> None:
        self.address = address
        self.clock = clock
        self.watchdog = watchdog if address is not None else None
        """Seconds between two ``WATCHDOG=1``, or ``None`` for no watchdog."""
        self.monotonic = monotonic
        self.status_interval = status_interval
        self._describe: Callable[[], str] | None = None
        self._last_status: str | None = None
        self._watchdog_loop: LoopingCall | None = None
        self._status_loop: LoopingCall | None = None
        self._failure_logged = False

    @classmethod
    def from_environment(cls, clock: Any, environ: Mapping[str, str] | None = None,
                         pid: int | None = None) -> Notifier:
        """The notifier ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` ask for."""
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        return cls(notify_address(environ), clock, watchdog=watchdog_interval(environ, pid))

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``NAME=value`` fields as one datagram; whether it was sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, self.address)
        except OSError as e:
            if not self._failure_logged:
                self._failure_logged = True
                self.log.warn("Cannot notify the service manager at {address}: {error}",
                              event="notify_failed", address=self.address.replace("\0", "@"),
                              error=e.strerror or str(e))
            return False
        return True

    def ready(self, status: str) -> None:
        """The gateway serves: every listener is bound and the settings are loaded."""
        self._last_status = status
        self.send("READY=1", _status_line(status))

    def reloading(self) -> None:
        """A reload begins; ``ready`` ends it."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={self.monotonic()}",
                  _status_line("reloading"))

    def stopping(self, status: str) -> None:
        """A stop begins: the status stays as given (the status refresh ends); the watchdog
        goes on until ``stop`` so that a stop that hangs is still caught."""
        self._stop_loop(self._status_loop)
        self._status_loop = None
        self._last_status = status
        self.send("STOPPING=1", _status_line(status))

    def status(self, text: str) -> None:
        """Show ``text`` in ``systemctl status``."""
        self._last_status = text
        self.send(_status_line(text))

    def start(self, describe: Callable[[], str]) -> None:
        """Send ``WATCHDOG=1`` every ``watchdog`` seconds (when a watchdog is asked for), and
        refresh the status from ``describe()`` every ``status_interval`` seconds."""
        if self.address is None:
            return
        self._describe = describe
        if self.watchdog is not None and self._watchdog_loop is None:
            self._watchdog_loop = self._loop(self._ping, self.watchdog)
        if self._status_loop is None:
            self._status_loop = self._loop(self._refresh_status, self.status_interval, now=False)

    def stop(self) -> None:
        """No more watchdog nor status (the process is about to end)."""
        for loop in (self._watchdog_loop, self._status_loop):
            self._stop_loop(loop)
        self._watchdog_loop = self._status_loop = None

    def _loop(self, call: Callable[[], None], interval: float, now: bool = True) -> LoopingCall:
        loop = LoopingCall(call)
        loop.clock = self.clock
        loop.start(interval, now=now)
        return loop

    @staticmethod
    def _stop_loop(loop: LoopingCall | None) -> None:
        if loop is not None and loop.running:
            loop.stop()

    def _ping(self) -> None:
        self.send("WATCHDOG=1")

    def _refresh_status(self) -> None:
        if self._describe is None:
            return
        text = self._describe()
        if text != self._last_status:
            self.status(text)
