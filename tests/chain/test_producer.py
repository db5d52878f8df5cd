"""The terminal's producer, paused while the client is slow or a filter's hook is answering."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from runnergw.chain.producer import GatedProducer
from tests.helpers.producers import RecordingProducer

__all__ = ["GatedProducerTests"]


class GatedProducerTests(SynchronousTestCase):
    """Two reasons to pause, one producer told once each way."""

    def setUp(self) -> None:
        self.runner = RecordingProducer()
        self.gate = GatedProducer(self.runner)

    def test_is_a_push_producer(self) -> None:
        """The gate stands where the client's transport expects a push producer."""
        self.assertTrue(verifyObject(IPushProducer, self.gate))

    def test_runner_waits_until_both_reasons_are_gone(self) -> None:
        """A slow client and a pending hook together pause the runner once; it resumes only
        when neither holds any more."""
        self.gate.pauseProducing()
        self.gate.hold(True)
        self.gate.resumeProducing()
        self.assertEqual(self.runner.calls, ["pause"])
        self.gate.hold(False)
        self.assertEqual(self.runner.calls, ["pause", "resume"])

    def test_repeated_pauses_tell_once(self) -> None:
        """The client's transport pausing twice does not pause the runner twice."""
        self.gate.pauseProducing()
        self.gate.pauseProducing()
        self.gate.resumeProducing()
        self.assertEqual(self.runner.calls, ["pause", "resume"])

    def test_stop_reaches_the_runner(self) -> None:
        """A client that goes away stops the runner at once, paused or not."""
        self.gate.hold(True)
        self.gate.stopProducing()
        self.assertEqual(self.runner.calls, ["pause", "stop"])
