"""A terminal's exchanges under way, as its ``stop()`` ends them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.under_way import STOPPING_MESSAGE, UnderWay
from runnergw.testing import RecordingClient

__all__ = ["UnderWayTests"]


class _ChainClient(RecordingClient):
    """A client that can be ended as the chain's is."""

    def __init__(self) -> None:
        super().__init__()
        self.ended_with: str | None = None

    def end_now(self, message: str) -> None:
        self.ended_with = message


class UnderWayTests(SynchronousTestCase):
    """What ``end_all`` does to each client under way."""

    def test_chain_clients_are_ended_with_a_final_error(self) -> None:
        """A client of the chain is ended cleanly, with the stopping message."""
        under_way, client = UnderWay(), _ChainClient()
        under_way.add(client)
        under_way.end_all()
        self.assertEqual((client.ended_with, client.aborted), (STOPPING_MESSAGE, None))

    def test_bare_streams_are_dropped(self) -> None:
        """A stream that cannot end an answer itself has its connection dropped."""
        under_way, client = UnderWay(), RecordingClient()
        under_way.add(client)
        under_way.end_all()
        self.assertEqual(client.aborted, STOPPING_MESSAGE)

    def test_finished_exchanges_are_left_alone(self) -> None:
        """An exchange that ended before the stop is not touched, and none is left after."""
        under_way, done, running = UnderWay(), _ChainClient(), _ChainClient()
        under_way.add(done)
        under_way.add(running)
        under_way.discard(done)
        under_way.end_all()
        self.assertEqual((done.ended_with, running.ended_with), (None, STOPPING_MESSAGE))
        self.assertEqual(len(under_way), 0)
