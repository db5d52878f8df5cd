"""The server's open connections, and closing them when the gateway stops accepting."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.connections import OpenConnections

__all__ = ["OpenConnectionsTests"]


class OpenConnectionsTests(SynchronousTestCase):
    """Waiting for the last connection to close."""

    def test_fires_when_the_last_closes(self) -> None:
        """The wait ends with the last connection, not before."""
        connections = OpenConnections()
        connections.add("a")
        connections.add("b")
        empty = connections.when_empty()
        connections.discard("a")
        self.assertNoResult(empty)
        connections.discard("b")
        self.successResultOf(empty)

    def test_at_once_when_none_is_open(self) -> None:
        """Nothing open: nothing to wait for."""
        self.successResultOf(OpenConnections().when_empty())

    def test_cancelled_wait_is_forgotten(self) -> None:
        """A cancelled wait is not fired later."""
        connections = OpenConnections()
        connections.add("a")
        empty = connections.when_empty()
        empty.cancel()
        self.failureResultOf(empty)
        connections.discard("a")


    def test_each_open_connection_even_if_one_closes(self) -> None:
        """An action that closes its connection (drops it from the set) still reaches
        every other one."""
        connections = OpenConnections()
        connections.update({"a", "b", "c"})
        seen: list[str] = []

        def close(connection: str) -> None:
            seen.append(connection)
            connections.discard(connection)

        connections.each(close)
        self.assertEqual((sorted(seen), len(connections)), (["a", "b", "c"], 0))
