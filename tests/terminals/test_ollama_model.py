"""The model of a request no filter read: the terminal reads the body's top-level ``model``
(as Ollama does), never a member nested deeper, and never replaces a model a filter read."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.config.runners import RunnerSettings
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.testing import RecordingClient, make_exchange
from tests.helpers.fake_hosts import OK, make_balancer

__all__ = ["ModelReadTests"]


class ModelReadTests(SynchronousTestCase):
    """What the audit trail, the ledger and the metrics name as the request's model."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.balancer, self.pools = make_balancer(self.clock, 1)
        runner = RunnerSettings(name="gpu", path="/r", host="10.0.0.1", port=11434)
        terminal = OllamaTerminal(runner, self.balancer, self.clock)
        self.runner = ChainRunner(Router([Route("gpu", ("r",), (), terminal)],
                                         Route("", (), (), None)))

    def chat(self, body: bytes, model: str | None = None) -> Exchange:
        """A chat whose body is ``body`` (and whose model a filter read as ``model``), sent
        to the runner and answered."""
        exchange = make_exchange("POST", "/r/api/chat", body=body)
        exchange.model = model
        done = self.runner.serve(exchange, RecordingClient(body))
        connection, _ = self.pools[0].open()
        connection.dataReceived(OK)
        self.successResultOf(done)
        return exchange

    def test_nested_model_ignored(self) -> None:
        """A ``model`` inside another member, even before the real one, is not the model."""
        exchange = self.chat(b'{"metadata":{"model":"bogus-123"},"model":"llama3.2:1b",'
                             b'"messages":[]}')
        self.assertEqual(exchange.model, "llama3.2:1b")

    def test_only_nested_model_is_unknown(self) -> None:
        """A body whose only ``model`` is nested names no model."""
        exchange = self.chat(b'{"options":{"model":"bogus-123"},"messages":[]}')
        self.assertIsNone(exchange.model)

    def test_filter_model_kept(self) -> None:
        """The model a filter read (an alias resolved, say) is never replaced by the body's."""
        exchange = self.chat(b'{"model":"bogus-123","messages":[]}', model="llama3.2:1b")
        self.assertEqual(exchange.model, "llama3.2:1b")

    def test_normal_form(self) -> None:
        """The model is named as Ollama lists it: lowercase, with its tag."""
        exchange = self.chat(b'{"model":"Library/Llama3.2","messages":[]}')
        self.assertEqual(exchange.model, "llama3.2:latest")

    def test_large_body_not_read(self) -> None:
        """A body over 64 KiB is not kept to be read: its model is unknown."""
        padding = b" " * (64 << 10)
        exchange = self.chat(b'{"model":"llama3.2:1b",' + padding + b'"messages":[]}')
        self.assertIsNone(exchange.model)
