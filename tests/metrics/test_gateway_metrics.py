"""A running gateway's metrics, scraped from its metrics listener after real requests."""

from __future__ import annotations

import signal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from runnergw.service import GatewayService
from tests.helpers.gateway import RunningGateway, start_gateway
from tests.helpers.node_settings import write_node
from tests.helpers.policy import call, start_policy_proxy, usage_report

__all__ = ["GatewayMetricsTests", "MetricsListenerStartTests", "MetricsOffTests"]

_MODEL = "llama3.2:1b"
_RUNNER = {"host": "127.0.0.1:1", "path": "/ollama"}


async def scrape(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the gateway's ``/metrics`` once its exchanges are over, parsed by
    prometheus-client's parser: (name, sorted labels) → value."""
    await gateway.service.factory.handler.inflight.when_idle()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"GET", f"{gateway.service.metrics_url}/metrics".encode(),
                                   Headers({b"Connection": [b"close"]}))
    assert response.code == 200
    text = (await readBody(response)).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


class GatewayMetricsTests(TestCase):
    """Requests answered, refused and streamed, as Prometheus reads them."""

    timeout = 30

    async def test_requests_and_tokens(self) -> None:
        """Two answered generations, a refused model and a missing token are counted by
        their outcome and reason; the answered ones' tokens by model and type. The refused
        model's name is no label value."""
        upstream, gateway = start_policy_proxy(self)
        token = gateway.token(role="user")
        whole = await call(self, gateway, "POST", "/api/generate", token,
                           {"model": _MODEL, "prompt": "Hi", "stream": False})
        streamed = await call(self, gateway, "POST", "/api/chat", token,
                              {"model": _MODEL, "messages": [{"role": "user",
                                                              "content": "Hi"}]})
        refused = await call(self, gateway, "POST", "/api/generate", token,
                             {"model": "qwen2.5:7b", "prompt": "Hi"})
        stranger = await call(self, gateway, "GET", "/api/tags", "not-a-token")
        self.assertEqual([r.status for r in (whole, streamed, refused, stranger)],
                         [200, 200, 403, 401])
        found: dict[Any, float] = await scrape(gateway)
        requests = "runnergw_requests_total"
        self.assertEqual(found[_key(requests, route="local", method_class="write",
                                    status="200", outcome="ok", reason="")], 2.0)
        self.assertEqual(found[_key(requests, route="local", method_class="write",
                                    status="403", outcome="denied", reason="model")], 1.0)
        self.assertEqual(found[_key(requests, route="local", method_class="read",
                                    status="401", outcome="denied", reason="token")], 1.0)
        usage = {"gen_ai_system": "ollama", "gen_ai_request_model": _MODEL,
                 "gen_ai_response_model": _MODEL}
        prompt = float(upstream.fake.prompt_tokens)
        for operation in ("text_completion", "chat"):
            self.assertEqual(found[_key("gen_ai_client_token_usage_sum", gen_ai_token_type="input",
                                        gen_ai_operation_name=operation, **usage)], prompt)
            self.assertEqual(found[_key("gen_ai_client_token_usage_sum",
                                        gen_ai_token_type="output",
                                        gen_ai_operation_name=operation, **usage)], 3.0)
        self.assertEqual(found[_key("gen_ai_server_time_to_first_token_seconds_count",
                                    gen_ai_operation_name="chat", **usage)], 1.0)
        self.assertEqual(found[_key("runnergw_request_duration_seconds_count", route="local",
                                    method_class="write")], 3.0)
        labels = {value for _, pairs in found for _, value in pairs}
        self.assertNotIn("qwen2.5:7b", labels)
        self.assertNotIn("not-a-token", labels)
        self.assertEqual(found[_key("runnergw_exchanges_in_progress")], 0.0)


    async def test_nested_model_is_no_label(self) -> None:
        """A ``model`` member nested in the body (before the real one) names nothing: the
        audit trail, the ledger and the model metrics all name the model the runner served,
        and no series carries the nested name."""
        upstream, gateway = start_policy_proxy(self)
        token = gateway.token(role="user")
        body = (b'{"metadata":{"model":"bogus-123"},"model":"llama3.2:1b","stream":false,'
                b'"messages":[{"role":"user","content":"Hi"}]}')
        answered = await call(self, gateway, "POST", "/api/chat", token, body)
        self.assertEqual(answered.status, 200)
        found: dict[Any, float] = await scrape(gateway)
        labels = {value for _, pairs in found for _, value in pairs}
        self.assertNotIn("bogus-123", labels)
        self.assertEqual(found[_key("gen_ai_server_request_duration_seconds_count",
                                    gen_ai_operation_name="chat", gen_ai_system="ollama",
                                    gen_ai_request_model=_MODEL,
                                    gen_ai_response_model=_MODEL)], 1.0)
        self.assertEqual([record["model"] for record in gateway.audit_records()], [_MODEL])
        rows = await usage_report(gateway, "--by", "model")
        self.assertEqual([row["key"] for row in rows], [_MODEL])


class MetricsOffTests(TestCase):
    """``metrics.address: off``."""

    def test_no_listener_no_observer(self) -> None:
        """No listener is started and exchanges are not observed at all."""
        gateway = start_gateway(self, [{"host": "127.0.0.1:9", "path": "/"}], tls=False,
                                metrics={"address": "off"})
        self.assertIsNone(gateway.service.metrics)
        self.assertEqual(gateway.service.metrics_url, "")
        self.assertEqual(gateway.service.factory.handler.observers, [])


class MetricsListenerStartTests(TestCase):
    """The metrics listener as the service starts it."""

    timeout = 10

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_logged_where_it_listens(self) -> None:
        """The ``metrics_listening`` event gives the URL bound (port 0: the port chosen)."""
        node = write_node(self, runners=[_RUNNER])
        service = GatewayService(node.settings, node.parts, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [event] = [e for e in self.events if e.get("event") == "metrics_listening"]
        self.assertEqual(event["url"], service.metrics_url)
        self.assertRegex(service.metrics_url, r"^http://127\.0\.0\.1:[1-9][0-9]*$")

    def test_port_taken_is_fatal(self) -> None:
        """A metrics port already taken stops the start, naming ``metrics.address``; the
        gateway's own port is not left open."""
        taken = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        node = write_node(self, runners=[_RUNNER],
                          extra={"metrics": {"address": f"127.0.0.1:{port}"}})
        service = GatewayService(node.settings, node.parts, reactor)
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn(f"runnergw: cannot listen on metrics.address 127.0.0.1:{port}: ",
                      str(error))
        self.assertIsNone(service.port)

    def test_exposed_address_warned(self) -> None:
        """An address other machines reach is served, and logged as a warning."""
        node = write_node(self, runners=[_RUNNER], extra={"metrics": {"address": ":9464"}})
        memory = MemoryReactorClock()
        service = GatewayService(node.settings, node.parts, memory)
        service.privilegedStartService()
        [warning] = [e for e in self.events if e.get("event") == "metrics_exposed"]
        self.assertEqual(warning["log_level"].name, "warn")
        self.assertEqual([(port, interface) for port, _, _, interface in memory.tcpServers],
                         [(0, "127.0.0.1"), (9464, "::")])
