"""The metrics listener: plain HTTP on ``metrics.address``, apart from the gateway's own."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Site

from runnergw.config.reader import ListenAddress

__all__ = ["MetricsListener", "MetricsSite"]


class MetricsSite(Site):
    """A site that writes no access log: a scrape every few seconds is not news."""

    noisy = False

    def startFactory(self) -> None:
        """No access log to open, nor its clock to keep."""

    def log(self, request: Any) -> None:
        """Nothing is logged per request."""


class MetricsListener:
    """Serves ``root`` on ``address`` once :meth:`listen` is called: a TCP address, or the
    path of a unix socket (a worker's, read by its supervisor alone)."""

    def __init__(self, reactor: Any, address: ListenAddress | str, root: Resource) -> None:
        self.reactor = reactor
        self.address = address
        self.site = MetricsSite(root)
        self.port: IListeningPort | None = None

    def listen(self) -> str:
        """Bind now; returns the URL bound (the port chosen, for port 0).

        Raises:
            SystemExit: the address cannot be bound (named as ``metrics.address``).
        """
        if isinstance(self.address, str):
            try:
                self.port = self.reactor.listenUNIX(self.address, self.site, mode=0o600)
            except CannotListenError as e:
                raise SystemExit(f"runnergw: cannot listen on {self.address}: "
                                 f"{e.socketError or e}") from e
            return f"unix:{self.address}"
        try:
            self.port = self.reactor.listenTCP(self.address.port, self.site,
                                               interface=self.address.host or "::")
        except CannotListenError as e:
            raise SystemExit(f"runnergw: cannot listen on metrics.address {self.address}: "
                             f"{e.socketError or e}") from e
        bound = self.port.getHost()
        host = f"[{bound.host}]" if ":" in bound.host else bound.host
        return f"http://{host}:{bound.port}"

    def stop(self) -> Deferred[None]:
        """Stop listening (open scrapes end with their connections)."""
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return port.stopListening()  # type: ignore[return-value]
