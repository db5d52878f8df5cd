"""The Ollama terminal over a runner of several hosts: a request nothing of which was sent
goes on to another host; once a byte was written it is never sent again (no generation runs
twice); the host is chosen by load and by the model a filter read."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.config.runner_pool import RunnerHost
from runnergw.config.runners import RunnerSettings
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.testing import RecordingClient, make_exchange
from tests.helpers.fake_hosts import OK, answer, make_balancer, reset

__all__ = ["AffinityTests", "NoReplayTests", "RetryBeforeSendingTests"]

_BODY = b'{"model":"llama3.2:1b","prompt":"Hi"}'
_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


class _PoolTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.balancer, self.pools = make_balancer(self.clock, 2, eject_after=1)
        hosts = (RunnerHost("10.0.0.1", 11434), RunnerHost("10.0.0.2", 11434))
        runner = RunnerSettings(name="gpu", path="/r", host="10.0.0.1", port=11434, hosts=hosts)
        self.terminal = OllamaTerminal(runner, self.balancer, self.clock)
        self.runner = ChainRunner(Router([Route("gpu", ("r",), (), self.terminal)],
                                         Route("", (), (), None)))

    def serve(self, exchange: Exchange, body: bytes = b"") -> tuple[object, RecordingClient]:
        client = RecordingClient(body)
        return self.runner.serve(exchange, client), client

    def generate(self) -> Exchange:
        return make_exchange("POST", "/r/api/generate", body=_BODY)


class RetryBeforeSendingTests(_PoolTestCase):
    """Nothing sent yet: another host takes the request."""

    def test_refused_connect_goes_to_the_next_host(self) -> None:
        """A host refusing the connection costs the client nothing: the other host gets the
        whole request, and the refusing one is ejected."""
        done, client = self.serve(self.generate(), _BODY)
        self.pools[0].refuse()
        connection, transport = self.pools[1].open()
        self.assertTrue(transport.value().startswith(b"POST /api/generate HTTP/1.1\r\n"
                                                     b"Host: 10.0.0.2:11434\r\n"))
        self.assertTrue(transport.value().endswith(_BODY))
        connection.dataReceived(OK)
        self.successResultOf(done)
        self.assertEqual(client.status, 200)
        self.assertEqual([host.healthy for host in self.balancer.hosts], [False, True])

    def test_connection_reset_before_writing_goes_to_the_next_host(self) -> None:
        """A new connection that is already closed when the request would be written takes
        nothing: the other host gets the request."""
        done, client = self.serve(self.generate(), _BODY)
        closed, untouched = self.pools[0].connection()
        reset(closed)
        self.pools[0].waiting.pop(0).callback(closed)
        connection, _ = self.pools[1].open()
        connection.dataReceived(OK)
        self.successResultOf(done)
        self.assertEqual((client.status, untouched.value()), (200, b""))
        self.assertFalse(self.balancer.hosts[0].healthy)

    def test_every_host_refusing_is_a_502(self) -> None:
        """When no host accepts, the client hears that the runner is unreachable, after
        one try per host."""
        exchange = self.generate()
        done, client = self.serve(exchange, _BODY)
        self.pools[0].refuse()
        self.pools[1].refuse()
        self.successResultOf(done)
        self.assertEqual((client.status, client.json()),
                         (502, {"error": "runner gpu is unreachable"}))
        self.assertEqual(exchange.outcome, "upstream_error")
        self.assertEqual([pool.waiting for pool in self.pools], [[], []])

    def test_stale_keep_alive_retried_without_a_body(self) -> None:
        """A bodiless request written to a kept-alive connection the host had closed is
        sent once more."""
        stale, _ = self.pools[0].connection()
        self.pools[0].keep(stale)
        done, client = self.serve(make_exchange("GET", "/r/api/tags"))
        reset(stale)
        connection, transport = self.pools[1].open()
        self.assertTrue(transport.value().startswith(b"GET /api/tags HTTP/1.1\r\n"))
        connection.dataReceived(OK)
        self.successResultOf(done)
        self.assertEqual(client.status, 200)
        self.assertTrue(self.balancer.hosts[0].healthy)


class NoReplayTests(_PoolTestCase):
    """Once a byte of the request was written, a failure reaches the client."""

    def test_reset_before_the_answer_not_retried(self) -> None:
        """A host that resets after the request went out: 502, and no other host is asked
        (the generation may have started)."""
        done, client = self.serve(self.generate(), _BODY)
        connection, transport = self.pools[0].open()
        self.assertTrue(transport.value().endswith(_BODY))
        reset(connection)
        self.successResultOf(done)
        self.assertEqual((client.status, client.json()),
                         (502, {"error": "runner gpu closed the connection"}))
        self.assertEqual(self.pools[1].waiting, [])

    def test_stale_keep_alive_with_a_body_not_retried(self) -> None:
        """A generation written to a kept-alive connection that turns out closed may have
        reached the host: it is not sent again."""
        stale, _ = self.pools[0].connection()
        self.pools[0].keep(stale)
        done, client = self.serve(self.generate(), _BODY)
        reset(stale)
        self.successResultOf(done)
        self.assertEqual(client.status, 502)
        self.assertEqual(self.pools[1].waiting, [])

    def test_stream_cut_mid_way_not_replayed(self) -> None:
        """A stream the host cuts ends for the client there; the host is ejected and no
        other host is asked."""
        done, client = self.serve(self.generate(), _BODY)
        connection, _ = self.pools[0].open()
        connection.dataReceived(_STREAM_HEAD + b"c\r\n{\"t\":\"t0 \"}\n\r\n")
        reset(connection)
        self.successResultOf(done)
        self.assertEqual((client.status, client.body), (200, b'{"t":"t0 "}\n'))
        self.assertIsNotNone(client.aborted)
        self.assertEqual(self.pools[1].waiting, [])
        self.assertFalse(self.balancer.hosts[0].healthy)


class AffinityTests(_PoolTestCase):
    """The model a filter read from the body picks a host that has it loaded."""

    def setUp(self) -> None:
        super().setUp()
        self.terminal.start()
        answer(self.pools[0].open()[0], 200, b'{"models":[]}')
        answer(self.pools[1].open()[0], 200, b'{"models":[{"name":"llama3.2:1b"}]}')

    def test_model_read_by_a_filter(self) -> None:
        """A request whose model a filter read goes to the host that has it loaded."""
        for _ in range(2):
            exchange = self.generate()
            exchange.model = "llama3.2:1b"
            self.serve(exchange, _BODY)
            self.assertEqual((len(self.pools[0].waiting), len(self.pools[1].waiting)), (0, 1))
            self.pools[1].waiting.pop().cancel()

    def test_body_not_read_for_affinity(self) -> None:
        """Without a filter reading the body, the model in it is not looked for: the hosts
        are taken in turn."""
        self.serve(self.generate(), _BODY)
        self.serve(self.generate(), _BODY)
        self.assertEqual((len(self.pools[0].waiting), len(self.pools[1].waiting)), (1, 1))
        for pool in self.pools:
            pool.waiting.pop().cancel()

    def test_statuses_and_readiness(self) -> None:
        """The terminal shows each host's state and is ready while a host is healthy."""
        statuses = self.terminal.upstream_hosts()
        self.assertEqual([(s.runner, s.host, s.healthy, s.loaded_models) for s in statuses],
                         [("gpu", "10.0.0.1:11434", True, ()),
                          ("gpu", "10.0.0.2:11434", True, ("llama3.2:1b",))])
        self.assertEqual(self.terminal.not_ready_reasons(), [])
