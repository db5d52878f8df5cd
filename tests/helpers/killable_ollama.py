"""A fake Ollama on 127.0.0.1 that can be killed (its port closed, every connection reset)
and brought back on the same port, as a runner host that crashes and restarts; and a log
watcher that waits for the gateway's events."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.logger import globalLogPublisher
from twisted.protocols.policies import WrappingFactory

from tests.helpers.fake_ollama import CountingSite, FakeOllama

__all__ = ["KillableOllama", "LogWatch"]


class KillableOllama:
    """A ``FakeOllama`` whose process can die and restart (``kill``, ``revive``)."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.fake = FakeOllama(reactor)
        self.site = CountingSite(self.fake)
        self._factory = WrappingFactory(self.site)
        self._factory.noisy = False
        self._port: IListeningPort | None = reactor.listenTCP(0, self._factory,
                                                              interface="127.0.0.1")
        self.port_number = self._port.getHost().port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a runner's ``hosts`` lists it."""
        return f"127.0.0.1:{self.port_number}"

    def generations(self) -> list[Any]:
        """The generation requests it received (not the gateway's probes and polls)."""
        return [seen for seen in self.fake.requests if seen.path.endswith("/api/generate")]

    def kill(self) -> Deferred[Any]:
        """Reset every connection and stop listening: new connects are refused."""
        for connection in list(self._factory.protocols):
            connection.transport.abortConnection()
        port, self._port = self._port, None
        return port.stopListening() if port is not None else succeed(None)

    def revive(self) -> None:
        """Listen again on the same port."""
        self._port = self.reactor.listenTCP(self.port_number, self._factory,
                                            interface="127.0.0.1")

    def stop(self) -> Deferred[Any]:
        """For cleanup: kill it and wait until every connection to it has closed."""
        killed = self.kill()
        killed.addCallback(lambda _: self.site.all_closed())
        return killed


class LogWatch:
    """Keeps the events logged while it watches; ``wait`` fires at a matching one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiters: list[tuple[dict[str, Any], Deferred[dict[str, Any]]]] = []
        globalLogPublisher.addObserver(self._seen)

    def close(self) -> None:
        """Stop watching."""
        globalLogPublisher.removeObserver(self._seen)

    def named(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """The events seen of that name, with those fields."""
        return [event for event in self.events if _matches(event, name, fields)]

    def wait(self, name: str, **fields: Any) -> Deferred[dict[str, Any]]:
        """Fires with the first event of that name and fields, seen already or to come."""
        for event in self.named(name, **fields):
            return succeed(event)
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._waiters.append(({"event": name, **fields}, waiter))
        return waiter

    def _seen(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        still = []
        for fields, waiter in self._waiters:
            if _matches(event, fields["event"], fields):
                waiter.callback(event)
            else:
                still.append((fields, waiter))
        self._waiters = still


def _matches(event: dict[str, Any], name: str, fields: dict[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in fields.items()
                                              if k != "event")
