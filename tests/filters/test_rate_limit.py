"""The ``rateLimit`` filter: requests per minute per subject, with a burst, by role."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Identity
from runnergw.config.errors import ConfigErrors
from runnergw.config.roles import RoleSettings
from runnergw.config.settings import Settings
from runnergw.filters.rate_limit import RateLimitFilter
from runnergw.filters.role import RoleFilter
from runnergw.limits.checks import Check, admit_in_turn
from runnergw.limits.days import QuotaDays
from runnergw.limits.interfaces import RateDecision
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters

__all__ = ["RateLimitAnswerTests", "RateLimitBuildTests", "RateLimitCountingTests",
           "SharedStateTests"]

_ROLES = {
    # 6 a minute: one more every 10 s, 3 at once.
    "user": RoleSettings("user", requests_per_minute=6, burst=3),
    # No burst: the bucket holds the per-minute figure.
    "team": RoleSettings("team", requests_per_minute=120),
    "admin": RoleSettings("admin", concurrency=4),
}


class _RateLimited(SynchronousTestCase):
    """A role filter then the rate limit, on one in-process limit state and a test clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.filters = [RoleFilter(None, _ROLES, "user"),
                        RateLimitFilter(LocalLimitState(self.clock))]

    def serve(self, subject: str | None = "alice", claims: dict[str, Any] | None = None,
              token_id: str = "", path: str = "/api/generate") -> FilterRun:
        method = "POST" if path == "/api/generate" else "GET"
        exchange = make_exchange(method, path)
        claims = claims or {}
        exchange.identity = Identity(subject=subject, role=claims.get("role"), claims=claims,
                                     token_kind="v4.public", token_id=token_id)
        return self.successResultOf(run_filters(self.filters, exchange,
                                                Answer.json({"response": "hi"})))

    def use_burst(self, count: int = 3, **identity: Any) -> list[FilterRun]:
        runs = [self.serve(**identity) for _ in range(count)]
        self.assertEqual([run.status for run in runs], [200] * count)
        return runs


class RateLimitAnswerTests(_RateLimited):
    """What a client over its rate sees, and what the ones under it see."""

    def test_burst_passes(self) -> None:
        """``burst`` requests in a row all reach the runner."""
        runs = self.use_burst()
        self.assertTrue(all(run.terminal.called for run in runs))

    def test_over_the_burst_refused(self) -> None:
        """The request after the burst gets 429 ``{"error": …}``; the runner is not called."""
        self.use_burst()
        run = self.serve()
        self.assertEqual(
            (run.status, run.json()),
            (429, {"error": 'rate limit of role "user" reached: retry in 10 s'}))
        self.assertFalse(run.terminal.called)

    def test_retry_after_from_the_rate(self) -> None:
        """``Retry-After`` is the whole seconds until one more request is allowed: at 6 a
        minute, 10."""
        self.use_burst()
        self.assertEqual(self.serve().client.header("Retry-After"), "10")

    def test_retry_after_rounded_up(self) -> None:
        """Part of the way through a refill, ``Retry-After`` is what is left, rounded up."""
        self.use_burst()
        self.clock.advance(6.5)
        self.assertEqual(self.serve().client.header("Retry-After"), "4")

    def test_retry_after_under_a_second(self) -> None:
        """A rate faster than one a second says ``Retry-After: 1``, never 0 (clients would
        retry at once)."""
        for _ in range(120):
            self.serve(claims={"role": "team"})
        run = self.serve(claims={"role": "team"})
        self.assertEqual((run.status, run.client.header("Retry-After")), (429, "1"))

    def test_refusal_carries_ratelimit_headers(self) -> None:
        """The 429 says the bucket size, that nothing remains, and when it is full again."""
        self.use_burst()
        client = self.serve().client
        self.assertEqual((client.header("RateLimit-Limit"), client.header("RateLimit-Remaining"),
                          client.header("RateLimit-Reset")), ("3", "0", "30"))

    def test_passing_answers_count_down(self) -> None:
        """Answers that pass carry ``RateLimit-*`` headers, ``Remaining`` going down."""
        runs = self.use_burst()
        self.assertEqual([run.client.header("RateLimit-Limit") for run in runs], ["3"] * 3)
        self.assertEqual([run.client.header("RateLimit-Remaining") for run in runs],
                         ["2", "1", "0"])
        self.assertEqual([run.client.header("RateLimit-Reset") for run in runs],
                         ["10", "20", "30"])
        self.assertIsNone(runs[0].client.header("Retry-After"))

    def test_audit_outcome(self) -> None:
        """The audit records the refusal as ``refused``, ``rate limited``."""
        self.use_burst()
        run = self.serve()
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("refused", "rate limited"))


class RateLimitCountingTests(_RateLimited):
    """Who is counted, and how the bucket refills."""

    def test_passes_after_the_refill(self) -> None:
        """Once ``Retry-After`` has passed, the next request reaches the runner."""
        self.use_burst()
        self.assertEqual(self.serve().status, 429)
        self.clock.advance(10)
        run = self.serve()
        self.assertEqual(run.status, 200)
        self.assertTrue(run.terminal.called)

    def test_refill_gives_one_not_the_burst(self) -> None:
        """One refill period gives back one request, not the whole burst."""
        self.use_burst()
        self.clock.advance(10)
        self.assertEqual([self.serve().status, self.serve().status], [200, 429])

    def test_refused_requests_do_not_delay(self) -> None:
        """Retrying while refused does not push the next allowed request further away."""
        self.use_burst()
        for _ in range(20):
            self.serve()
        self.clock.advance(10)
        self.assertEqual(self.serve().status, 200)

    def test_subjects_apart(self) -> None:
        """One subject spending its burst does not limit another."""
        self.use_burst(subject="alice")
        self.assertEqual(self.serve(subject="alice").status, 429)
        runs = self.use_burst(subject="bob")
        self.assertEqual(runs[0].client.header("RateLimit-Remaining"), "2")

    def test_token_without_sub(self) -> None:
        """A token without ``sub`` is counted by its own id, apart from other such tokens."""
        self.use_burst(subject=None, token_id="token:aaaa")
        self.assertEqual(self.serve(subject=None, token_id="token:aaaa").status, 429)
        self.assertEqual(self.serve(subject=None, token_id="token:bbbb").status, 200)
        self.assertEqual(self.serve(subject="alice").status, 200)

    def test_role_without_a_rate(self) -> None:
        """A role without ``requestsPerMinute`` is never limited and gets no headers."""
        runs = [self.serve(claims={"role": "admin"}) for _ in range(50)]
        self.assertEqual({run.status for run in runs}, {200})
        self.assertIsNone(runs[-1].client.header("RateLimit-Limit"))

    def test_burst_defaults_to_the_rate(self) -> None:
        """Without ``burst``, a minute's worth of requests may come at once."""
        runs = [self.serve(claims={"role": "team"}) for _ in range(121)]
        self.assertEqual([run.status for run in runs], [200] * 120 + [429])
        self.assertEqual(runs[0].client.header("RateLimit-Limit"), "120")

    def test_every_endpoint_counts(self) -> None:
        """Catalogue requests use the same bucket as inference."""
        self.use_burst(count=2)
        self.assertEqual(self.serve(path="/api/tags").status, 200)
        self.assertEqual(self.serve().status, 429)


class _LaterState:
    """A limit state elsewhere (shared by several nodes): it answers with a Deferred."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []
        self.pending: list[Deferred[RateDecision]] = []

    gathers_checks = True
    """A request's checks wait to be made together, as with a state in Redis."""

    def take_request(self, key: str, per_minute: int, burst: int) -> Deferred[RateDecision]:
        self.asked.append((key, per_minute, burst))
        self.pending.append(Deferred())
        return self.pending[-1]

    def admit(self, checks: list[Check]) -> Deferred[None] | None:
        return admit_in_turn(self, checks)


class SharedStateTests(SynchronousTestCase):
    """A limit state that answers later: the request waits for its decision."""

    def serve(self, state: _LaterState) -> Deferred[FilterRun]:
        exchange = make_exchange("POST", "/api/generate")
        exchange.identity = Identity(subject="alice", role=None, token_kind="v4.public")
        return run_filters([RoleFilter(None, _ROLES, "user"), RateLimitFilter(state)], exchange,
                           Answer.json({"response": "hi"}))

    def test_waits_then_passes(self) -> None:
        """The runner is called only once the state allowed the request."""
        state = _LaterState()
        running = self.serve(state)
        self.assertNoResult(running)
        self.assertEqual(state.asked, [("alice", 6, 3)])
        state.pending[0].callback(RateDecision(True, 3, 2, 10.0, 0.0))
        run = self.successResultOf(running)
        self.assertEqual((run.status, run.client.header("RateLimit-Remaining")), (200, "2"))
        self.assertTrue(run.terminal.called)

    def test_waits_then_refused(self) -> None:
        """A refusal decided later is the same 429."""
        state = _LaterState()
        running = self.serve(state)
        state.pending[0].callback(RateDecision(False, 3, 0, 25.0, 5.0))
        run = self.successResultOf(running)
        self.assertEqual((run.status, run.client.header("Retry-After"),
                          run.client.header("RateLimit-Reset")), (429, "5", "25"))
        self.assertFalse(run.terminal.called)


class RateLimitBuildTests(SynchronousTestCase):
    """Building the filter from the settings."""

    def test_needs_a_roles_section(self) -> None:
        """Without a ``roles`` section the operator is told the filter needs one."""
        with self.assertRaises(ConfigErrors) as raised:
            filter_from_settings("rateLimit")
        self.assertEqual([(e.path, e.message) for e in raised.exception.errors],
                         [("filters[0]", "the rateLimit filter needs a roles section")])

    def test_uses_the_gateway_state(self) -> None:
        """With the roles' limit parts, the filter counts in the gateway's state."""
        clock = Clock()
        state = LocalLimitState(clock)
        parts = LimitParts(state, QuotaDays(Settings(files=("<test>",)).policy.zone, clock),
                           None)
        built = filter_from_settings("rateLimit", limits=parts)
        self.assertIsInstance(built, RateLimitFilter)
        self.assertIs(built.state, state)
