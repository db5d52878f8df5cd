"""The harness filter authors test with: exchanges as the server makes them, canned runner
answers, a runner that records what it got, the real chain between them, and filters built
from options exactly as the settings loader builds them."""

from __future__ import annotations

import json

import attrs
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.audit_log import AuditLog
from runnergw.chain.exchange import Exchange, Reply
from runnergw.config.errors import ConfigErrors
from runnergw.filters.role import RoleFilter
from runnergw.testing import (
    Answer,
    CannedTerminal,
    RecordingClient,
    filter_from_settings,
    make_exchange,
    run_filters,
)

__all__ = ["AnswerTests", "FilterFromSettingsTests", "MakeExchangeTests", "RunFiltersTests"]


class Budget:
    """A filter with options, given by its dotted path (as a custom filter is)."""

    name = "budget"

    @attrs.frozen
    class Options:
        per_day: int
        note: str = ""

    def __init__(self, options: Budget.Options) -> None:
        self.options = options

    def request_headers(self, exchange: Exchange) -> None:
        exchange.notes["budget"] = self.options.per_day


class _Collect:
    """Collects the request body and replaces it."""

    name = "collect"

    def request_headers(self, exchange: Exchange) -> None:
        exchange.collect_body(1024)

    def request_body(self, exchange: Exchange) -> None:
        assert exchange.request_body is not None
        exchange.request_body = exchange.request_body.upper()


class MakeExchangeTests(SynchronousTestCase):
    """``make_exchange``: a request whose head just arrived."""

    def test_defaults(self) -> None:
        """A GET of ``/`` over TLS, with a Host, no body and no identity yet."""
        exchange = make_exchange()
        self.assertEqual((exchange.method, exchange.path, exchange.query, exchange.version),
                         ("GET", "/", "", "HTTP/1.1"))
        self.assertEqual(exchange.headers.get("host"), "gateway.test")
        self.assertEqual((exchange.request_id, exchange.client_address, exchange.secure),
                         ("test-request", "192.0.2.10", True))
        self.assertEqual(exchange.content_length, 0)
        self.assertFalse(exchange.has_body)
        self.assertIsNone(exchange.identity)

    def test_body_and_its_length(self) -> None:
        """A body declares its length, or none when sent chunked."""
        self.assertEqual(make_exchange("POST", body=b"abc").content_length, 3)
        chunked = make_exchange("POST", body=b"abc", chunked=True)
        self.assertIsNone(chunked.content_length)
        self.assertTrue(chunked.has_body)

    def test_identity_as_a_token_filter_leaves_it(self) -> None:
        """``subject`` or ``role`` give the exchange an identity from a public token."""
        identity = make_exchange(subject="alice", role="pro").identity
        assert identity is not None
        self.assertEqual((identity.subject, identity.role, identity.token_kind),
                         ("alice", "pro", "v4.public"))


class AnswerTests(SynchronousTestCase):
    """What the canned runner answers."""

    def test_default(self) -> None:
        """An empty JSON object, with its length."""
        answer = Answer()
        self.assertEqual((answer.status, list(answer.chunks), answer.streamed),
                         (200, [b"{}"], False))

    def test_ndjson(self) -> None:
        """Streamed NDJSON, one object per write, each with its newline."""
        answer = Answer.ndjson({"n": 1}, {"done": True}, status=201)
        self.assertEqual((answer.status, answer.streamed), (201, True))
        self.assertEqual(dict(answer.headers)["Content-Type"], "application/x-ndjson")
        self.assertEqual(list(answer.chunks), [b'{"n": 1}\n', b'{"done": true}\n'])

    def test_json(self) -> None:
        """One whole JSON body with its length."""
        answer = Answer.json({"models": []}, status=200)
        self.assertFalse(answer.streamed)
        self.assertEqual(json.loads(b"".join(answer.chunks)), {"models": []})
        self.assertTrue(dict(answer.headers)["Content-Type"].startswith("application/json"))


class RunFiltersTests(SynchronousTestCase):
    """``run_filters``: the real chain between a recording client and a canned runner."""

    def test_runner_records_what_it_got(self) -> None:
        """The runner sees the body (as filters left it), its length and the headers it
        is sent; the client gets the runner's answer."""
        run = self.successResultOf(run_filters(
            [_Collect()], make_exchange("POST", "/api/chat", body=b"hello",
                                        headers=[("Host", "gw"), ("X-Trace", "t1")]),
            Answer.ndjson({"n": 1}, {"n": 2})))
        self.assertTrue(run.terminal.called)
        self.assertEqual((run.terminal.received, run.terminal.received_length),
                         (b"HELLO", 5))
        self.assertEqual(run.terminal.upstream_headers.get("x-trace"), "t1")
        self.assertEqual((run.status, run.lines()), (200, [{"n": 1}, {"n": 2}]))
        self.assertTrue(run.client.finished)

    def test_chunked_body_relayed(self) -> None:
        """A chunked body nobody collects reaches the runner chunked, whole."""
        run = self.successResultOf(run_filters(
            [], make_exchange("POST", body=b"abc", chunked=True)))
        self.assertEqual((run.terminal.received, run.terminal.received_length), (b"abc", None))

    def test_filter_answering_first(self) -> None:
        """A filter's own answer means the runner is never called."""

        class Cached:
            name = "cached"

            def request_headers(self, exchange: Exchange) -> None:
                exchange.response = Reply(200, b'{"cached": true}')

        run = self.successResultOf(run_filters([Cached()]))
        self.assertFalse(run.terminal.called)
        self.assertEqual(run.json(), {"cached": True})

    def test_error_shape_and_body_limit(self) -> None:
        """The route's error shape and body limit can be those of a command route."""
        run = self.successResultOf(run_filters(
            [_Collect()], make_exchange("POST", body=b"x" * 20), error_shape="detail",
            max_body_size=10))
        self.assertEqual(run.status, 413)
        self.assertEqual(list(run.json()), ["detail"])
        self.assertFalse(run.terminal.called)

    def test_client_leaving_midway(self) -> None:
        """A client that leaves during its body is no failure of the gateway: the runner
        got part of the body and answers nobody, as a real one; nothing is logged."""
        run = self.successResultOf(run_filters(
            [], make_exchange("POST", body=b"abcdef", leaves_after=2)))
        self.assertTrue(run.client.gone)
        self.assertIsNone(run.status)
        self.assertEqual(run.terminal.received, b"ab")
        self.assertEqual(run.exchange.outcome, "client_gone")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_given_client(self) -> None:
        """A test keeps its own client to act on it midway; the run waits for the hooks."""
        client = RecordingClient()
        pending: Deferred[None] = Deferred()

        class Slow:
            name = "slow"

            def response_headers(self, exchange: Exchange) -> Deferred[None]:
                return pending

        done = run_filters([Slow()], client=client)
        self.assertNoResult(done)
        self.assertIsNone(client.status)
        pending.callback(None)
        run = self.successResultOf(done)
        self.assertIs(run.client, client)
        self.assertEqual(run.status, 200)

    def test_canned_terminal_as_a_producer(self) -> None:
        """The runner stand-in is the answer's producer: it records pauses and stops."""
        terminal = CannedTerminal(Answer())
        terminal.pauseProducing()
        self.assertTrue(terminal.paused)
        terminal.resumeProducing()
        terminal.stopProducing()
        self.assertEqual((terminal.paused, terminal.stopped), (False, True))
        self.assertIsNone(self.successResultOf(terminal.stop()))


class FilterFromSettingsTests(SynchronousTestCase):
    """``filter_from_settings``: built as the settings loader builds it."""

    def test_builtin_filter(self) -> None:
        """A built-in filter by its settings name."""
        self.assertIsInstance(filter_from_settings("role"), RoleFilter)

    def test_custom_filter_with_options(self) -> None:
        """A filter by its dotted path, its options read by their camelCase keys."""
        built = filter_from_settings(f"{__name__}.Budget", {"perDay": 3, "note": "n"})
        self.assertEqual(built.options, Budget.Options(per_day=3, note="n"))

    def test_option_problems_located_at_filters_0(self) -> None:
        """Every problem is raised together, located at ``filters[0]`` as an operator would
        read it."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, f"{__name__}.Budget",
                                  {"perDay": "lots", "extra": 1})
        self.assertEqual(sorted(str(e) for e in error.errors), sorted([
            f'<test>: filters[0]["{__name__}.Budget"].perDay: expected a whole number, '
            'got "lots"',
            f'<test>: filters[0]["{__name__}.Budget"].extra: unknown setting (check the '
            'spelling; see the settings reference)']))

    def test_missing_required_option(self) -> None:
        """A required option left out is named."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, f"{__name__}.Budget")
        self.assertEqual([str(e) for e in error.errors],
                         [f'<test>: filters[0]["{__name__}.Budget"].perDay: required'])

    def test_unknown_filter_and_unwanted_options(self) -> None:
        """An unknown name, or options for a filter that takes none, are located too."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, "tokn")
        self.assertEqual([e.path for e in error.errors], ["filters[0]"])
        self.assertIn('unknown filter "tokn"', str(error))
        error = self.assertRaises(ConfigErrors, filter_from_settings, "role", {"x": 1})
        self.assertEqual([str(e) for e in error.errors],
                         ["<test>: filters[0].role: the role filter takes no options"])

    def test_context_parts_given(self) -> None:
        """Parts given by the test replace the defaults (here the audit trail)."""
        audit_log = AuditLog("")
        built = filter_from_settings("audit", audit_log=audit_log)
        self.assertIs(built.audit_log, audit_log)

    def test_missing_part_reported(self) -> None:
        """A filter needing a part the test did not give says so, located."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, "token")
        self.assertEqual([e.path for e in error.errors], ["filters[0]"])

