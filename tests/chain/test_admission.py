"""Where the chain makes a request's limit checks when the limit state gathers them (each
call a round trip): after the request hooks, before any body byte is read, unless the usage
filter holds them for its lease after the body; and before a later filter's refusal or
answer, so that the rate limit refuses first as when each filter asked in turn."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.admission import settle_admission, wait_for_client
from runnergw.chain.exchange import Exchange, Identity, Reject, Reply
from runnergw.config.roles import RoleSettings
from runnergw.filters.access import AccessFilter
from runnergw.filters.concurrency import ConcurrencyFilter
from runnergw.filters.rate_limit import RateLimitFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.usage import UsageFilter
from runnergw.limits.admission import HELD_BODY_MOST, Admission
from runnergw.limits.checks import BucketCheck, Check, SlotCheck
from runnergw.limits.days import QuotaDays
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from runnergw.testing import Answer, FilterRun, RecordingClient, make_exchange, run_filters

__all__ = ["AnswerSettlesTests", "BodyPhaseTests", "HeadersPhaseTests", "RefusedLaterTests",
           "SettleAdmissionTests", "WaitForClientTests"]

_MAX_BODY = 1 << 20
_ROLES = {
    # A daily quota: the checks wait for the lease, made once the body is in.
    "user": RoleSettings("user", models=("llama3.2:*",), requests_per_minute=6, burst=1,
                         concurrency=1, concurrency_wait=2.0, tokens_per_day=1000),
    # None: the checks are made before the body is read.
    "free": RoleSettings("free", models=("llama3.2:*",), requests_per_minute=6, burst=1,
                         concurrency=1),
}
_ALLOWED = {"model": "llama3.2:1b", "prompt": "x" * 40}


class _GatheringState(LocalLimitState):
    """The limit state in this process, its checks gathered as a state in Redis has them;
    notes the kinds of the checks of each step."""

    gathers_checks = True

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.steps: list[list[str]] = []

    def admit(self, checks: Sequence[Check]) -> Any:
        self.steps.append([type(check).__name__ for check in checks])
        return super().admit(checks)


class _Refuser:
    """A filter after the limits that refuses every request in ``request_headers``."""

    name = "refuser"

    def request_headers(self, exchange: Exchange) -> None:
        raise Reject(403, "refused later in the chain")


class _Answerer:
    """A filter after the limits that answers in place of the runner (a cached reply), in
    ``request_headers`` or, once the body is in, in ``request_body``."""

    name = "answerer"

    def __init__(self, in_body: bool = False) -> None:
        self.in_body = in_body

    def request_headers(self, exchange: Exchange) -> None:
        if not self.in_body:
            exchange.response = Reply(200, b'{"cached":true}')

    def request_body(self, exchange: Exchange) -> None:
        if self.in_body:
            exchange.response = Reply(200, b'{"cached":true}')


class _ChainTestCase(SynchronousTestCase):
    """Role, rate limit, concurrency, access and usage filters on a gathering state."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = _GatheringState(self.clock)
        self.parts = LimitParts(self.state, QuotaDays(ZoneInfo("UTC"), self.clock), None)
        self.day = self.parts.days.today()

    def start(self, role: str = "user", body: Any = _ALLOWED, *,
              before_access: Sequence[Any] = (),
              after: Sequence[Any] = ()) -> Deferred[FilterRun]:
        """Send a generation of ``role``'s subject (``body``: JSON, or bytes as they are)
        from ``self.client``; ``before_access``: filters between the limits and
        ``access``, ``after``: after ``usage``."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        exchange = make_exchange("POST", "/api/generate", body=raw)
        exchange.identity = Identity(subject="alice", role=role, claims={"role": role},
                                     token_kind="v4.public")
        filters = [RoleFilter(None, _ROLES, "user"), RateLimitFilter(self.state),
                   ConcurrencyFilter(self.state), *before_access,
                   AccessFilter(_ROLES, _MAX_BODY), UsageFilter(self.parts, _MAX_BODY), *after]
        self.client = RecordingClient(raw)
        return run_filters(filters, exchange, Answer.json({"response": "hi", "done": True}),
                           client=self.client)

    def serve(self, role: str = "user", body: Any = _ALLOWED, **options: Any) -> FilterRun:
        """``start``, the request over at once."""
        return self.successResultOf(self.start(role, body, **options))

    def spend_bucket(self) -> None:
        """The subject's one request of the burst was made."""
        self.state.take_request("alice", 6, 1)

    def place_free(self) -> bool:
        """The subject's one concurrency place is free (taken and given back to see)."""
        slot = self.state.acquire_slot("alice", 1, 0)
        if slot is None:
            return False
        slot.release()  # type: ignore[union-attr]
        return True


class HeadersPhaseTests(_ChainTestCase):
    """Without a daily quota, the checks are made once the request hooks are over."""

    def test_refused_before_the_body(self) -> None:
        """A rate-limited caller without a daily quota gets its 429 before any byte of its
        body is read."""
        self.spend_bucket()
        run = self.serve("free")
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))
        self.assertFalse(run.client.body_asked)

    def test_made_in_one_step(self) -> None:
        """The bucket and the place are asked for in one step of the state (one round trip
        with Redis)."""
        run = self.serve("free")
        self.assertEqual(run.status, 200)
        self.assertEqual(self.state.steps, [["BucketCheck", "SlotCheck"]])

    def test_refused_later_gives_the_place_back(self) -> None:
        """A request a later filter refuses once its checks were made gives its place
        back: the subject's next request is not held back."""
        run = self.serve("free", after=(_Refuser(),))
        self.assertEqual(run.status, 403)
        self.assertTrue(self.place_free())

    def test_later_refusal_after_the_rate_limit(self) -> None:
        """A rate-limited request a later ``request_headers`` hook refuses too gets the
        rate limit's 429 (with ``Retry-After``), as when each filter asked in turn."""
        self.spend_bucket()
        run = self.serve("free", before_access=(_Refuser(),))
        self.assertEqual((run.status, run.exchange.reason, run.client.header("Retry-After")),
                         (429, "rate limited", "10"))


class BodyPhaseTests(_ChainTestCase):
    """With a daily quota, the checks are held for the lease and made with it once the body
    is in."""

    def test_made_with_the_lease(self) -> None:
        """The bucket, the place and the prompt's lease are asked for in one step, after the
        body was read."""
        run = self.serve()
        self.assertEqual(run.status, 200)
        self.assertEqual(self.state.steps, [["BucketCheck", "SlotCheck", "LeaseCheck"]])

    def test_rate_limited_after_the_body(self) -> None:
        """A rate-limited caller with a daily quota gets its 429 once its body was read,
        and takes nothing from its quota."""
        self.spend_bucket()
        run = self.serve()
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))
        self.assertTrue(run.client.body_asked)
        self.assertEqual(self.state.tokens_used("alice", self.day), 0)

    def test_large_body_refused_before_it_is_read(self) -> None:
        """A rate-limited caller with a daily quota sending a body over 64 KiB (padded where
        no prompt token is counted) gets its 429 before any byte of it is read."""
        self.spend_bucket()
        run = self.serve(body={**_ALLOWED, "keep_alive": "x" * HELD_BODY_MOST})
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))
        self.assertFalse(run.client.body_asked)

    def test_large_body_leased_after(self) -> None:
        """A body over 64 KiB: the bucket and the place are asked for before it is read,
        the lease after (two steps)."""
        run = self.serve(body={**_ALLOWED, "keep_alive": "x" * HELD_BODY_MOST})
        self.assertEqual(run.status, 200)
        self.assertEqual(self.state.steps, [["BucketCheck", "SlotCheck"], ["LeaseCheck"]])

    def test_no_place_leases_nothing(self) -> None:
        """A request that waited in vain for a place gets 429 and takes nothing from its
        quota."""
        self.state.acquire_slot("alice", 1, 0)
        running = self.start()
        self.clock.advance(2.0)
        run = self.successResultOf(running)
        self.assertEqual((run.status, run.exchange.reason), (429, "concurrency limit"))
        self.assertEqual(self.state.tokens_used("alice", self.day), 0)

    def test_client_leaves_during_the_wait(self) -> None:
        """A client that leaves while its request waits for a place ends the request at
        once, recorded as ``client_gone``; the runner is never asked."""
        self.state.acquire_slot("alice", 1, 0)
        running = self.start()
        self.assertNoResult(running)
        self.client.leave()
        run = self.successResultOf(running)
        self.assertEqual((run.exchange.outcome, run.terminal.called), ("client_gone", False))

    def test_client_gone_takes_no_place(self) -> None:
        """The place freed after a client left during its wait is not taken for it: the
        subject's next request gets it."""
        held = self.state.acquire_slot("alice", 1, 0)
        running = self.start()
        self.client.leave()
        self.successResultOf(running)
        held.release()  # type: ignore[union-attr]
        self.assertTrue(self.place_free())

    def test_client_gone_takes_no_tokens(self) -> None:
        """A client that left during the wait for a place is charged no tokens, not even
        once a place comes free."""
        held = self.state.acquire_slot("alice", 1, 0)
        running = self.start()
        self.client.leave()
        self.successResultOf(running)
        held.release()  # type: ignore[union-attr]
        self.assertEqual(self.state.tokens_used("alice", self.day), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusedLaterTests(_ChainTestCase):
    """A rate-limited request that a later filter would refuse too gets the 429, counted in
    its bucket."""

    def refused(self, body: Any = _ALLOWED) -> FilterRun:
        self.spend_bucket()
        return self.serve(body=body)

    def test_quota_spent(self) -> None:
        """A rate-limited subject whose daily quota is spent too is told of its rate limit
        (the filter before ``usage``)."""
        self.state.add_tokens("alice", self.day, 1000)
        run = self.refused()
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))

    def test_model_not_allowed(self) -> None:
        """A rate-limited subject asking for a model its role may not use gets the 429,
        not the 403 ``access`` gives once the body is read."""
        run = self.refused({"model": "qwen2.5:7b", "prompt": "Hi"})
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))

    def test_body_not_readable(self) -> None:
        """A rate-limited subject sending a body that is not JSON gets the 429, not the
        400."""
        run = self.refused(b'{"model": "llama3.2:1b", "prompt": ')
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))

    def test_refused_request_counted(self) -> None:
        """A request ``access`` refuses still takes its request from the bucket: the
        subject's next request is rate limited."""
        denied = self.serve(body={"model": "qwen2.5:7b", "prompt": "Hi"})
        self.assertEqual(denied.status, 403)
        self.assertEqual(self.serve().exchange.reason, "rate limited")

    def test_refusal_takes_no_place(self) -> None:
        """A rate-limited request refused by ``access`` too holds no concurrency place."""
        self.refused({"model": "qwen2.5:7b", "prompt": "Hi"})
        self.assertTrue(self.place_free())


class AnswerSettlesTests(_ChainTestCase):
    """A filter that answers in place of the runner answers only once the checks before it
    passed."""

    def test_request_hook_answer_rate_limited(self) -> None:
        """A rate-limited request a later ``request_headers`` hook would answer gets the
        429 instead."""
        self.spend_bucket()
        run = self.serve("free", before_access=(_Answerer(),))
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))

    def test_request_hook_answer_counted(self) -> None:
        """A request answered by a ``request_headers`` hook is counted in its bucket: the
        next one is rate limited."""
        answered = self.serve("free", before_access=(_Answerer(),))
        self.assertEqual((answered.status, answered.body), (200, b'{"cached":true}'))
        self.assertEqual(self.serve("free").exchange.reason, "rate limited")

    def test_body_hook_answer_rate_limited(self) -> None:
        """A rate-limited request with a daily quota that a ``request_body`` hook before
        ``usage`` would answer gets the 429 instead, and takes no tokens."""
        self.spend_bucket()
        run = self.serve(before_access=(_Answerer(in_body=True),))
        self.assertEqual((run.status, run.exchange.reason), (429, "rate limited"))
        self.assertEqual(self.state.tokens_used("alice", self.day), 0)

    def test_body_hook_answer_sent(self) -> None:
        """A request with a daily quota answered by a ``request_body`` hook gets that
        answer once its held checks passed, and takes no tokens (no lease was asked)."""
        run = self.serve(before_access=(_Answerer(in_body=True),))
        self.assertEqual((run.status, run.body), (200, b'{"cached":true}'))
        self.assertEqual(self.state.steps, [["BucketCheck", "SlotCheck"]])


class _Client:
    """A client for the chain's waits: it can leave."""

    def __init__(self) -> None:
        self.gone = False
        self._callbacks: list[Any] = []

    def when_gone(self, callback: Any) -> None:
        if self.gone:
            callback()
        else:
            self._callbacks.append(callback)

    def leave(self) -> None:
        self.gone = True
        for callback in self._callbacks:
            callback()


def _refuse_when_refused(check: Check) -> None:
    if check.refused:
        raise Reject(429, "refused")


class WaitForClientTests(SynchronousTestCase):
    """A wait in the chain (a hook answering later, a place) that the client may leave."""

    def setUp(self) -> None:
        self.exchange = make_exchange("POST", "/api/generate")
        self.client = _Client()
        self.cancelled: list[bool] = []
        self.pending: Deferred[None] = Deferred(lambda _: self.cancelled.append(True))
        self.waiting = ensureDeferred(wait_for_client(self.pending, self.exchange, self.client))

    def test_done(self) -> None:
        """A wait that ends goes on with the request."""
        self.pending.callback(None)
        self.assertTrue(self.successResultOf(self.waiting))

    def test_client_leaves(self) -> None:
        """A client that leaves ends the wait (the place or hook given up) and the request
        is recorded as ``client_gone``."""
        self.client.leave()
        self.assertEqual(self.cancelled, [True])
        self.assertFalse(self.successResultOf(self.waiting))
        self.assertEqual((self.exchange.outcome, self.exchange.reason),
                         ("client_gone", "client disconnected while the request waited"))

    def test_earlier_outcome_kept(self) -> None:
        """A request already recorded otherwise keeps that outcome when its client leaves."""
        self.exchange.outcome, self.exchange.reason = "truncated", "earlier"
        self.client.leave()
        self.successResultOf(self.waiting)
        self.assertEqual(self.exchange.outcome, "truncated")

    def test_cancelled_otherwise(self) -> None:
        """A wait cancelled while the client is still there is an error of the gateway,
        not a client that left."""
        self.pending.cancel()
        self.failureResultOf(self.waiting, CancelledError)


class SettleAdmissionTests(SynchronousTestCase):
    """Making the exchange's waiting checks at a point of the chain."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = _GatheringState(self.clock)
        self.exchange = make_exchange("POST", "/api/generate")
        self.client = _Client()
        self.bucket = BucketCheck("alice", 6, 1)

    def admit(self, *checks: Check) -> Admission:
        admission = self.exchange.admission = Admission(self.state)
        for check in checks:
            admission.add(check, _refuse_when_refused)
        return admission

    def settle(self, before_body: bool = False) -> Deferred[bool]:
        return ensureDeferred(settle_admission(self.exchange, self.client, before_body))

    def test_no_admission(self) -> None:
        """A request no limit filter gave checks goes on."""
        self.assertTrue(self.successResultOf(self.settle()))

    def test_held_before_the_body(self) -> None:
        """Checks held for a body hook are not made before the body: the bucket keeps its
        request."""
        self.admit(self.bucket).hold(100)
        self.assertTrue(self.successResultOf(self.settle(before_body=True)))
        self.assertFalse(self.bucket.answered)

    def test_held_made_after_the_body(self) -> None:
        """Checks held are made at the later points (a refusal, the terminal)."""
        self.admit(self.bucket).hold(100)
        self.assertTrue(self.successResultOf(self.settle()))
        self.assertTrue(self.bucket.answered)

    def test_refusal_raised(self) -> None:
        """A refused check ends the request with its filter's refusal."""
        self.state.take_request("alice", 6, 1)
        self.admit(self.bucket)
        self.failureResultOf(self.settle(), Reject)

    def test_client_leaves_during_a_wait(self) -> None:
        """A client that leaves while its request waits for a place ends the request; no
        place is taken for it."""
        held = self.state.acquire_slot("alice", 1, 0)
        slot = SlotCheck("alice", 1, 2.0)
        self.admit(slot)
        settling = self.settle()
        self.assertNoResult(settling)
        self.client.leave()
        self.assertFalse(self.successResultOf(settling))
        held.release()  # type: ignore[union-attr]
        self.assertEqual((slot.answered, self.clock.getDelayedCalls()), (False, []))
