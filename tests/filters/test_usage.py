"""The ``usage`` filter: generation caps, daily token quotas that hold mid-stream, and the
usage it counts for the audit line, the limit state and the ledger."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Identity
from runnergw.config.roles import RoleSettings
from runnergw.filters.access import AccessFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.usage import LEASE_BLOCK, UsageFilter
from runnergw.limits.days import QuotaDays
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from runnergw.testing import Answer, FilterRun, RecordingClient, make_exchange, run_filters
from runnergw.usage.ledger import UsageEntry

__all__ = ["ClientLeavesTests", "CountingTests", "DailyQuotaTests", "GenerationCapTests",
           "NoQuotaTests", "ReviewedEdgeTests", "ReadyTests", "StreamCutTests", "UsageEventTests",
           "WholeAnswerTests", "ZoneTests"]

_EVENING = datetime(2026, 12, 5, 22, tzinfo=timezone.utc).timestamp()
"""The tests' "now": two hours before midnight in UTC, one hour before it in Paris."""
_TODAY = "2026-12-05"
_MAX_BODY = 1 << 20
_MODEL = "llama3.2"
_SERVED = "llama3.2:latest"
"""The model as the gateway names it (the tag Ollama adds made explicit)."""
_PROMPT = "x" * 40
"""Estimated at 10 tokens (a quarter of its bytes)."""
_PROMPT_ESTIMATE = 10
_CHAT_ESTIMATE = 14
"""One message of ``_PROMPT``: 10 tokens, and 4 for the message's markup."""


def _compact(value: Any) -> bytes:
    """JSON as Ollama's Go encoder writes it: no spaces."""
    return json.dumps(value, separators=(",", ":")).encode()


def _ndjson(*objects: Any) -> Answer:
    """A streamed NDJSON answer written as Ollama writes it."""
    return Answer(200, (("Content-Type", "application/x-ndjson"),),
                  [_compact(o) + b"\n" for o in objects], streamed=True)


def _sse(*chunks: Any) -> Answer:
    """A streamed OpenAI-style answer as Ollama writes it: an event per chunk, then
    ``data: [DONE]``."""
    events = [b"data: " + _compact(chunk) + b"\n\n" for chunk in chunks]
    return Answer(200, (("Content-Type", "text/event-stream"),), [*events, b"data: [DONE]\n\n"],
                  streamed=True)


def _native_stream(tokens: int, *, kind: str = "generate", prompt_eval_count: int = 12,
                   eval_count: int | None = None, spaced: bool = False) -> Answer:
    """A native stream of ``tokens`` lines of text, then Ollama's last line with its counts."""
    text: dict[str, Any] = ({"response": "t"} if kind == "generate"
                            else {"message": {"role": "assistant", "content": "t"}})
    lines = [{"model": _MODEL, "created_at": "2026-12-05T22:00:00.1Z", **text, "done": False}
             for _ in range(tokens)]
    end = ({"response": ""} if kind == "generate"
           else {"message": {"role": "assistant", "content": ""}})
    lines.append({"model": _MODEL, "created_at": "2026-12-05T22:00:01Z", **end, "done": True,
                  "done_reason": "stop", "total_duration": 12345,
                  "prompt_eval_count": prompt_eval_count,
                  "eval_count": tokens if eval_count is None else eval_count})
    return Answer.ndjson(*lines) if spaced else _ndjson(*lines)


_CHUNK = {"id": "chatcmpl-417", "object": "chat.completion.chunk", "created": 1796508000,
          "model": _MODEL, "system_fingerprint": "fp_ollama"}


def _openai_stream(tokens: int, *, usage: tuple[int, int] | None = None,
                   kind: str = "openai_chat") -> Answer:
    """An OpenAI-style stream of ``tokens`` chunks of text, a last chunk that stops, and,
    with ``usage``, the usage-only chunk ``stream_options.include_usage`` asks for."""
    if kind == "openai_chat":
        chunk = _CHUNK

        def choice(content: str, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "delta": {"role": "assistant", "content": content},
                    "finish_reason": finish}
    else:
        chunk = {**_CHUNK, "id": "cmpl-417", "object": "text_completion"}

        def choice(content: str, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "text": content, "finish_reason": finish}
    chunks = [{**chunk, "choices": [choice("t", None)]} for _ in range(tokens)]
    chunks.append({**chunk, "choices": [choice("", "stop")]})
    if usage is not None:
        chunks.append({**chunk, "choices": [], "usage": {
            "prompt_tokens": usage[0], "completion_tokens": usage[1],
            "total_tokens": sum(usage)}})
    return _sse(*chunks)


def _events(body: bytes) -> list[Any]:
    """The data of each SSE event a client got: parsed JSON, or ``[DONE]``."""
    found = []
    for event in body.split(b"\n\n"):
        data = b"\n".join(line[6:] for line in event.split(b"\n") if line.startswith(b"data: "))
        if data:
            found.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return found


def _raw(body: Any) -> bytes:
    """A request body: JSON as a client sends it."""
    return json.dumps(body).encode()


def _generate(**fields: Any) -> dict[str, Any]:
    return {"model": _MODEL, "prompt": _PROMPT, **fields}


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": _MODEL, "messages": [{"role": "user", "content": _PROMPT}], **fields}


class _Ledger:
    """Stands for the usage ledger: keeps what it is given; its opening can be held."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self.entries: list[UsageEntry] = []
        self.totals = dict(totals or {})
        self.opening: Deferred[None] | None = None
        """When set, ``open`` waits for it (the file is still being opened)."""

    def open(self) -> Deferred[None]:
        return self.opening if self.opening is not None else succeed(None)

    def totals_for_day(self, day: str) -> Deferred[dict[str, int]]:
        if day != _TODAY:
            return fail(AssertionError(f"asked for the totals of {day}"))
        return succeed(dict(self.totals))

    def record(self, entry: UsageEntry) -> None:
        self.entries.append(entry)

    def close(self) -> Deferred[None]:
        return succeed(None)


class _Gate:
    """A filter nearer the runner than ``usage``: holds each line or event of the answer
    until the test lets it through, so that two answers can be interleaved."""

    name = "gate"

    def __init__(self) -> None:
        self.held: list[Deferred[None]] = []

    def request_headers(self, exchange: Exchange) -> None:
        exchange.observe_response(self)

    def response_line(self, exchange: Exchange, line: bytes) -> Deferred[None]:
        waiting: Deferred[None] = Deferred()
        self.held.append(waiting)
        return waiting


class _QuotaProbe:
    """A filter after ``usage``: what the subject's day total is when the runner is about to
    be asked."""

    name = "probe"

    def __init__(self, parts: LimitParts) -> None:
        self.parts = parts
        self.seen: list[int] = []

    def request_body(self, exchange: Exchange) -> None:
        self.seen.append(self.parts.state.tokens_used("alice", self.parts.days.today()))


class _UsageTestCase(SynchronousTestCase):
    """Role, access and usage filters in front of a canned runner, with a clock at
    22:00 UTC and a ledger that keeps what it is given."""

    zone = "UTC"
    rules = RoleSettings("user", max_tokens=100, tokens_per_day=1000)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_EVENING)
        self.ledger = _Ledger()
        self.parts = LimitParts(LocalLimitState(self.clock),
                                QuotaDays(ZoneInfo(self.zone), self.clock), self.ledger)
        self.successResultOf(self.parts.start())
        self.roles = {"user": self.rules, "pro": RoleSettings("pro", tokens_per_day=5000)}

    def start(self, path: str, body: Any, answer: Answer, *, subject: str = "alice",
              role: str | None = None, after: tuple[Any, ...] = (),
              client: RecordingClient | None = None) -> Deferred[FilterRun]:
        """Run a request with ``body`` (JSON) to a runner answering ``answer``."""
        exchange = make_exchange("POST", path, body=_raw(body))
        exchange.identity = Identity(subject=subject, role=None,
                                     claims={"role": role} if role else {},
                                     token_kind="v4.public")
        filters = [RoleFilter(None, self.roles, "user"), AccessFilter(self.roles, _MAX_BODY),
                   UsageFilter(self.parts, _MAX_BODY), *after]
        return run_filters(filters, exchange, answer, client=client)

    def serve(self, path: str, body: Any, answer: Answer, **options: Any) -> FilterRun:
        """``start``, with the answer over at once."""
        return self.successResultOf(self.start(path, body, answer, **options))

    def received(self, run: FilterRun) -> Any:
        """The body the runner was sent, as JSON."""
        assert run.terminal.received is not None
        return json.loads(run.terminal.received)

    def used(self, subject: str = "alice") -> int:
        """The subject's tokens today, as the limit state counts them."""
        return self.parts.state.tokens_used(subject, self.parts.days.today())

    def spend(self, tokens: int, subject: str = "alice") -> None:
        """Usage the subject had earlier today."""
        self.parts.state.add_tokens(subject, self.parts.days.today(), tokens)


class GenerationCapTests(_UsageTestCase):
    """The generation cap the runner is sent: ``maxTokens`` or what the quota leaves."""

    def test_num_predict_lowered(self) -> None:
        """A client asking for more than ``maxTokens`` is sent ``maxTokens``."""
        run = self.serve("/api/generate", _generate(options={"num_predict": 500}),
                         _native_stream(3))
        self.assertEqual(self.received(run)["options"], {"num_predict": 100})

    def test_num_predict_never_raised(self) -> None:
        """A client asking for less keeps its figure, and its body is sent as it was."""
        body = _generate(options={"num_predict": 50, "temperature": 0.2})
        run = self.serve("/api/generate", body, _native_stream(3))
        self.assertEqual(self.received(run), body)

    def test_num_predict_given_when_missing_or_unlimited(self) -> None:
        """No figure, or Ollama's "until the context is full" (-2), becomes the cap."""
        for options in ({}, {"options": {"num_predict": -2}}):
            run = self.serve("/api/chat", _chat(**options), _native_stream(3, kind="chat"))
            self.assertEqual(self.received(run)["options"], {"num_predict": 100})

    def test_openai_max_tokens_lowered(self) -> None:
        """An OpenAI chat asking for more ``max_tokens`` is sent ``maxTokens``."""
        run = self.serve("/v1/chat/completions", _chat(max_tokens=500),
                         Answer.json({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        self.assertEqual(self.received(run)["max_tokens"], 100)

    def test_openai_max_completion_tokens_lowered(self) -> None:
        """``max_completion_tokens`` is lowered too, and ``max_tokens`` (which Ollama reads)
        is sent with it."""
        run = self.serve("/v1/chat/completions", _chat(max_completion_tokens=500),
                         Answer.json({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        sent = self.received(run)
        self.assertEqual((sent["max_tokens"], sent["max_completion_tokens"]), (100, 100))

    def test_openai_completions_capped(self) -> None:
        """A legacy completion without ``max_tokens`` is sent the cap."""
        run = self.serve("/v1/completions", {"model": _MODEL, "prompt": _PROMPT},
                         Answer.json({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        self.assertEqual(self.received(run)["max_tokens"], 100)

    def test_cap_is_what_the_quota_leaves(self) -> None:
        """Near the end of the quota the cap is what is left once the prompt is counted,
        below ``maxTokens``."""
        self.spend(950)
        run = self.serve("/api/generate", _generate(options={"num_predict": 500}),
                         _native_stream(3))
        self.assertEqual(self.received(run)["options"], {"num_predict": 1000 - 950 - 10})

    def test_less_than_the_quota_leaves_is_kept(self) -> None:
        """A client asking for less than the quota leaves keeps its figure."""
        self.spend(950)
        run = self.serve("/api/generate", _generate(options={"num_predict": 20}),
                         _native_stream(3))
        self.assertEqual(self.received(run)["options"], {"num_predict": 20})

    def test_quota_alone_caps(self) -> None:
        """A role with a quota and no ``maxTokens`` is capped at what the quota leaves."""
        run = self.serve("/api/generate", _generate(), _native_stream(3), role="pro")
        self.assertEqual(self.received(run)["options"], {"num_predict": 5000 - 10})

    def test_embeddings_not_capped(self) -> None:
        """An embedding request generates nothing: its body goes as it came."""
        body = {"model": _MODEL, "input": _PROMPT}
        run = self.serve("/api/embed", body, Answer.json({"embeddings": [[0.5]]}))
        self.assertEqual(self.received(run), body)

    def test_catalogue_not_counted(self) -> None:
        """Requests that run no model are neither read nor counted, even with the quota
        spent."""
        self.spend(1000)
        run = self.serve("/api/show", {"model": _MODEL}, Answer.json({"details": {}}))
        self.assertEqual(run.status, 200)
        self.assertEqual((self.ledger.entries, run.exchange.notes), ([], {}))


class WholeAnswerTests(_UsageTestCase):
    """An answer that is not streamed cannot be cut: its cap is taken from the quota first."""

    def test_native_cap_taken_before_the_runner_is_asked(self) -> None:
        """With ``stream: false`` the prompt and the whole cap are counted before the
        runner is asked."""
        probe = _QuotaProbe(self.parts)
        run = self.serve("/api/generate", _generate(stream=False), Answer.json(
            {"model": _MODEL, "response": "ttt", "done": True, "prompt_eval_count": 12,
             "eval_count": 3}), after=(probe,))
        self.assertEqual(probe.seen, [_PROMPT_ESTIMATE + 100])
        self.assertEqual(self.received(run)["options"], {"num_predict": 100})

    def test_client_limit_bounds_what_is_taken(self) -> None:
        """A whole answer the client limits to 10 tokens takes 10 from the quota, not the
        role's cap: other requests of the subject are not refused for tokens it cannot use."""
        probe = _QuotaProbe(self.parts)
        run = self.serve("/api/generate", _generate(stream=False, options={"num_predict": 10}),
                         Answer.json({"model": _MODEL, "response": "ttt", "done": True,
                                      "prompt_eval_count": 12, "eval_count": 3}),
                         after=(probe,))
        self.assertEqual(probe.seen, [_PROMPT_ESTIMATE + 10])
        self.assertEqual(self.received(run)["options"], {"num_predict": 10})

    def test_native_unused_part_given_back(self) -> None:
        """Once answered, what the runner did not use goes back to the quota."""
        self.serve("/api/generate", _generate(stream=False), Answer.json(
            {"model": _MODEL, "response": "ttt", "done": True, "prompt_eval_count": 12,
             "eval_count": 3}))
        self.assertEqual(self.used(), 15)

    def test_openai_without_stream_taken_whole(self) -> None:
        """An OpenAI request that does not ask to stream is a whole answer: its cap is taken
        first and what it did not use given back."""
        probe = _QuotaProbe(self.parts)
        self.serve("/v1/chat/completions", _chat(), Answer.json(
            {"id": "chatcmpl-1", "object": "chat.completion", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}),
            after=(probe,))
        self.assertEqual(probe.seen, [_CHAT_ESTIMATE + 100])
        self.assertEqual(self.used(), 19)

    def test_whole_cap_bounded_by_the_quota(self) -> None:
        """Near the end of the quota a whole answer is capped at, and takes, what is left."""
        self.spend(960)
        probe = _QuotaProbe(self.parts)
        run = self.serve("/api/generate", _generate(stream=False), Answer.json(
            {"done": True, "prompt_eval_count": 12, "eval_count": 3}), after=(probe,))
        self.assertEqual(self.received(run)["options"], {"num_predict": 30})
        self.assertEqual(probe.seen, [1000])
        self.assertEqual(self.used(), 960 + 15)

    def test_streaming_answer_takes_only_its_prompt(self) -> None:
        """A streamed answer takes its prompt first and its tokens as they come."""
        probe = _QuotaProbe(self.parts)
        self.serve("/api/generate", _generate(), _native_stream(3), after=(probe,))
        self.assertEqual(probe.seen, [_PROMPT_ESTIMATE])


class DailyQuotaTests(_UsageTestCase):
    """A subject whose ``tokensPerDay`` is spent waits for the next day."""

    def test_spent_quota_refused_until_midnight(self) -> None:
        """A spent quota is a 429 in Ollama's error shape, with the seconds to midnight in
        ``Retry-After``; the runner is not asked."""
        self.spend(1000)
        run = self.serve("/api/generate", _generate(), _native_stream(3))
        self.assertEqual((run.status, run.json()), (429, {
            "error": 'the daily token quota of role "user" (1000) is spent until the day ends'}))
        self.assertEqual(run.client.header("Retry-After"), "7200")
        self.assertFalse(run.terminal.called)
        self.assertEqual(self.ledger.entries, [])
        self.assertEqual(self.used(), 1000)

    def test_admitted_again_after_midnight(self) -> None:
        """Once midnight has passed, the same subject has a whole quota again."""
        self.spend(1000)
        self.assertEqual(self.serve("/api/generate", _generate(), _native_stream(3)).status,
                         429)
        self.clock.advance(7200)
        run = self.serve("/api/generate", _generate(options={"num_predict": 500}),
                         _native_stream(3))
        self.assertEqual(run.status, 200)
        self.assertEqual(self.received(run)["options"], {"num_predict": 100})
        self.assertEqual([entry.day for entry in self.ledger.entries], ["2026-12-06"])
        self.assertEqual(self.used(), 15)

    def test_stream_across_midnight_counts_for_the_day_it_began(self) -> None:
        """A stream under way at midnight is counted for the day it began: it takes nothing
        from the new day's quota."""
        gate = _Gate()
        late = self.start("/api/generate", _generate(), _native_stream(40), after=(gate,))
        for _ in range(5):
            gate.held.pop(0).callback(None)
        self.clock.advance(7200)
        run = self.serve("/api/generate", _generate(), _native_stream(3))
        while gate.held:
            gate.held.pop(0).callback(None)
        self.assertEqual(len(self.successResultOf(late).lines()), 41)
        self.assertEqual([(entry.day, entry.completion_tokens) for entry in self.ledger.entries],
                         [("2026-12-06", 3), (_TODAY, 40)])
        self.assertEqual(self.received(run)["options"], {"num_predict": 100})
        self.assertEqual(self.used(), 15)

    def test_prompt_larger_than_what_is_left(self) -> None:
        """A prompt estimated at more than the quota leaves is refused with 429, and what
        was left stays left."""
        self.spend(995)
        run = self.serve("/api/generate", _generate(), _native_stream(3))
        self.assertEqual((run.status, run.json()), (429, {
            "error": 'this prompt needs about 10 tokens; the daily quota of role "user" '
                     "has 5 left"}))
        self.assertEqual(run.client.header("Retry-After"), "7200")
        self.assertFalse(run.terminal.called)
        self.assertEqual(self.used(), 995)

    def test_prompt_larger_than_the_whole_quota(self) -> None:
        """A prompt estimated at more than the whole daily quota can never pass: 400, not a
        429 that would send the client back at midnight for the same refusal."""
        run = self.serve("/api/generate", _generate(prompt="x" * 4004), _native_stream(3))
        self.assertEqual((run.status, run.json()), (400, {
            "error": 'this prompt (about 1001 tokens) is larger than the daily token quota '
                     'of role "user" (1000)'}))
        self.assertFalse(run.terminal.called)
        self.assertEqual(self.used(), 0)

    def test_nothing_left_to_generate(self) -> None:
        """A prompt that takes the last of the quota leaves nothing to generate: 429, and the
        prompt's tokens are not kept."""
        self.spend(990)
        run = self.serve("/api/generate", _generate(), _native_stream(3))
        self.assertEqual(run.status, 429)
        self.assertFalse(run.terminal.called)
        self.assertEqual(self.used(), 990)

    def test_embedding_may_take_the_last_tokens(self) -> None:
        """An embedding generates nothing: one that uses exactly what is left is served."""
        self.spend(990)
        run = self.serve("/api/embed", {"model": _MODEL, "input": _PROMPT},
                         Answer.json({"embeddings": [[0.5]], "prompt_eval_count": 10}))
        self.assertEqual(run.status, 200)
        self.assertEqual(self.used(), 1000)

    def test_quota_per_subject(self) -> None:
        """One subject's spent quota does not refuse another."""
        self.spend(1000)
        self.assertEqual(self.serve("/api/generate", _generate(), _native_stream(3),
                                    subject="bob").status, 200)


class ZoneTests(_UsageTestCase):
    """The day ends at midnight in ``policy.timeZone``."""

    zone = "Europe/Paris"

    def test_retry_after_counts_to_the_zone_midnight(self) -> None:
        """At 22:00 UTC it is 23:00 in Paris: one hour to wait."""
        self.spend(1000)
        run = self.serve("/api/generate", _generate(), _native_stream(3))
        self.assertEqual(run.client.header("Retry-After"), "3600")
        self.clock.advance(3600)
        self.assertEqual(self.serve("/api/generate", _generate(), _native_stream(3)).status,
                         200)


class StreamCutTests(_UsageTestCase):
    """A stream that reaches the quota ends with a well-formed last line, and the runner is
    told to stop."""

    rules = RoleSettings("user", max_tokens=100, tokens_per_day=30)

    def test_native_stream_cut(self) -> None:
        """The client gets the tokens the quota allows, then a last line with ``done_reason:
        "length"`` and the counts so far; the runner's request is closed."""
        run = self.serve("/api/generate", _generate(), _native_stream(50))
        lines = run.lines()
        allowed = 30 - _PROMPT_ESTIMATE
        self.assertEqual(lines[:-1], [{"model": _MODEL, "created_at": "2026-12-05T22:00:00.1Z",
                                       "response": "t", "done": False}] * allowed)
        self.assertEqual(lines[-1], {
            "model": _MODEL, "created_at": "2026-12-05T22:00:00Z", "response": "",
            "done": True, "done_reason": "length", "prompt_eval_count": _PROMPT_ESTIMATE,
            "eval_count": allowed})
        self.assertTrue(run.body.endswith(b"}\n"))
        self.assertTrue(run.terminal.stopped)
        self.assertTrue(run.client.finished)
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("truncated", "daily token quota reached"))

    def test_cut_stream_counted(self) -> None:
        """A cut stream is charged its prompt's estimate and what was relayed, and the
        ledger says it was cut."""
        run = self.serve("/api/generate", _generate(), _native_stream(50))
        self.assertEqual(self.used(), 30)
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 10, "completion_tokens": 20,
                                              "prompt_tokens_estimated": True})
        self.assertEqual(self.ledger.entries, [UsageEntry(
            day=_TODAY, subject="alice", role="user", model=_SERVED, prompt_tokens=10,
            completion_tokens=20, truncated=1)])

    def test_chat_stream_cut(self) -> None:
        """A cut chat ends with an empty assistant message."""
        run = self.serve("/api/chat", _chat(), _native_stream(50, kind="chat"))
        lines = run.lines()
        self.assertEqual(len(lines), 30 - _CHAT_ESTIMATE + 1)
        self.assertEqual(lines[-1]["message"], {"role": "assistant", "content": ""})
        self.assertEqual((lines[-1]["done"], lines[-1]["done_reason"], lines[-1]["eval_count"]),
                         (True, "length", 30 - _CHAT_ESTIMATE))
        self.assertTrue(run.terminal.stopped)

    def test_openai_stream_cut(self) -> None:
        """A cut OpenAI stream ends with a chunk finishing with ``length``, then ``data:
        [DONE]``; the runner's request is closed."""
        run = self.serve("/v1/chat/completions", _chat(stream=True), _openai_stream(50))
        events = _events(run.body)
        allowed = 30 - _CHAT_ESTIMATE
        self.assertEqual([e["choices"][0]["delta"]["content"] for e in events[:allowed]],
                         ["t"] * allowed)
        last = events[allowed]
        self.assertEqual((last["object"], last["model"], last["choices"]),
                         ("chat.completion.chunk", _MODEL,
                          [{"index": 0, "delta": {}, "finish_reason": "length"}]))
        self.assertEqual(events[allowed + 1:], ["[DONE]"])
        self.assertTrue(run.body.endswith(b"data: [DONE]\n\n"))
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(self.ledger.entries[0].completion_tokens, allowed)

    def test_openai_cut_chunk_belongs_to_the_stream(self) -> None:
        """The last chunk has the id and creation time of the stream it ends, as every chunk
        of a stream has the same."""
        run = self.serve("/v1/chat/completions", _chat(stream=True), _openai_stream(50))
        last = _events(run.body)[-2]
        self.assertEqual((last["id"], last["created"]), (_CHUNK["id"], _CHUNK["created"]))

    def test_openai_completions_stream_cut(self) -> None:
        """A cut legacy completion ends with an empty text finishing with ``length``."""
        run = self.serve("/v1/completions", {"model": _MODEL, "prompt": _PROMPT, "stream": True},
                         _openai_stream(50, kind="openai_completions"))
        events = _events(run.body)
        self.assertEqual(len(events), 30 - _PROMPT_ESTIMATE + 2)
        self.assertEqual((events[-2]["object"], events[-2]["choices"]),
                         ("text_completion", [{"index": 0, "text": "", "finish_reason": "length"}]))
        self.assertEqual(events[-1], "[DONE]")

    def test_stream_within_the_quota_is_whole(self) -> None:
        """A stream the quota covers is relayed as the runner sent it and charged the
        runner's counts."""
        answer = _native_stream(5, prompt_eval_count=12)
        run = self.serve("/api/generate", _generate(), answer)
        self.assertEqual(run.body, b"".join(answer.chunks))
        self.assertFalse(run.terminal.stopped)
        self.assertEqual(self.used(), 17)

    def test_two_streams_share_the_quota(self) -> None:
        """Two streams of one subject relayed at once never give it more than its quota
        between them; each ends with a well-formed last line."""
        self.roles["user"] = RoleSettings("user", tokens_per_day=40)
        first, second = _Gate(), _Gate()
        runs = [self.start("/api/generate", _generate(prompt="hi"), _native_stream(40),
                           after=(gate,)) for gate in (first, second)]
        while first.held or second.held:
            for gate in (first, second):
                if gate.held:
                    gate.held.pop(0).callback(None)
        lines = [self.successResultOf(run).lines() for run in runs]
        tokens = [sum(1 for line in each if not line["done"]) for each in lines]
        self.assertEqual([each[-1]["done_reason"] for each in lines], ["length", "length"])
        self.assertEqual([each[-1]["eval_count"] for each in lines], tokens)
        # Both prompts are one token; the second stream stops when its next lease is
        # refused, the first once it used the rest.
        self.assertEqual(tokens, [40 - 2 - LEASE_BLOCK, LEASE_BLOCK])
        self.assertEqual(self.used(), 40)


class CountingTests(_UsageTestCase):
    """What a request used, from the runner's own counts, for the audit line, the limit
    state and the ledger."""

    def test_native_stream_counts(self) -> None:
        """The counts of a native stream's last line replace the estimates."""
        run = self.serve("/api/generate", _generate(), _native_stream(5, prompt_eval_count=12))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 12, "completion_tokens": 5})
        self.assertEqual(self.used(), 17)
        self.assertEqual(self.ledger.entries, [UsageEntry(
            day=_TODAY, subject="alice", role="user", model=_SERVED, prompt_tokens=12,
            completion_tokens=5, truncated=0)])

    def test_reported_counts_not_lines(self) -> None:
        """When the runner reports other counts than the lines it sent, its counts are the
        ones charged."""
        run = self.serve("/api/chat", _chat(), _native_stream(5, kind="chat",
                                                              prompt_eval_count=40,
                                                              eval_count=9))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 40, "completion_tokens": 9})
        self.assertEqual(self.used(), 49)

    def test_lines_spaced_otherwise(self) -> None:
        """A stream whose JSON has spaces (written by something else than Ollama's encoder)
        is counted the same."""
        self.roles["user"] = RoleSettings("user", tokens_per_day=30)
        run = self.serve("/api/generate", _generate(), _native_stream(50, spaced=True))
        self.assertEqual(run.lines()[-1]["eval_count"], 20)
        self.assertEqual(len(run.lines()), 21)

    def test_native_whole_answer_counts(self) -> None:
        """A native answer that is not streamed is charged its counts."""
        run = self.serve("/api/chat", _chat(stream=False), Answer.json(
            {"model": _MODEL, "message": {"role": "assistant", "content": "ok"}, "done": True,
             "prompt_eval_count": 21, "eval_count": 2}))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 21, "completion_tokens": 2})
        self.assertEqual(self.used(), 23)
        self.assertEqual(self.ledger.entries[0].completion_tokens, 2)

    def test_openai_stream_usage(self) -> None:
        """An OpenAI stream is charged the ``usage`` of its last chunk."""
        run = self.serve("/v1/chat/completions",
                         _chat(stream=True, stream_options={"include_usage": True}),
                         _openai_stream(5, usage=(16, 5)))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 16, "completion_tokens": 5})
        self.assertEqual(self.used(), 21)
        self.assertEqual((self.ledger.entries[0].prompt_tokens,
                          self.ledger.entries[0].completion_tokens), (16, 5))

    def test_openai_whole_answer_usage(self) -> None:
        """An OpenAI answer that is not streamed is charged its ``usage``."""
        run = self.serve("/v1/completions", {"model": _MODEL, "prompt": _PROMPT}, Answer.json(
            {"id": "cmpl-1", "object": "text_completion", "choices": [],
             "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 11, "completion_tokens": 4})
        self.assertEqual(self.used(), 15)

    def test_embed_counts(self) -> None:
        """``/api/embed`` is charged the prompt tokens it reports."""
        run = self.serve("/api/embed", {"model": _MODEL, "input": [_PROMPT, _PROMPT]},
                         Answer.json({"model": _MODEL, "embeddings": [[0.5], [0.25]],
                                      "prompt_eval_count": 18}))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 18, "completion_tokens": 0})
        self.assertEqual(self.used(), 18)
        self.assertEqual(self.ledger.entries[0].prompt_tokens, 18)

    def test_openai_embeddings_counts(self) -> None:
        """``/v1/embeddings`` is charged the prompt tokens of its ``usage``."""
        run = self.serve("/v1/embeddings", {"model": _MODEL, "input": _PROMPT}, Answer.json(
            {"object": "list", "data": [], "usage": {"prompt_tokens": 9, "total_tokens": 9}}))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 9, "completion_tokens": 0})
        self.assertEqual(self.used(), 9)

    def test_answer_without_counts_estimated(self) -> None:
        """An answer that reports no counts is charged the prompt's estimate, and the audit
        line says it is one."""
        run = self.serve("/api/embeddings", {"model": _MODEL, "prompt": _PROMPT},
                         Answer.json({"embedding": [0.5]}))
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 10, "completion_tokens": 0,
                                              "prompt_tokens_estimated": True})
        self.assertEqual(self.used(), 10)

    def test_ledger_entry_names_the_role_and_the_model_served(self) -> None:
        """The ledger row is under the caller's role and the model Ollama was asked for."""
        self.roles["pro"] = RoleSettings("pro", aliases={"fast": _MODEL})
        self.serve("/api/generate", _generate(model="fast"), _native_stream(2), role="pro",
                   subject="bob")
        entry = self.ledger.entries[0]
        self.assertEqual((entry.subject, entry.role, entry.model), ("bob", "pro", _SERVED))

    def test_usage_adds_up(self) -> None:
        """Each request adds to the subject's day."""
        for _ in range(3):
            self.serve("/api/generate", _generate(), _native_stream(5, prompt_eval_count=12))
        self.assertEqual(self.used(), 3 * 17)
        self.assertEqual(len(self.ledger.entries), 3)


class UsageEventTests(_UsageTestCase):
    """The usage chunk of an OpenAI stream: asked for by the gateway, shown only to clients
    that asked."""

    def test_gateway_asks_for_usage(self) -> None:
        """A stream that did not ask for its usage is sent upstream asking for it, with its
        cap."""
        run = self.serve("/v1/chat/completions", _chat(stream=True),
                         _openai_stream(3, usage=(16, 3)))
        sent = self.received(run)
        self.assertEqual((sent["stream_options"], sent["max_tokens"]),
                         ({"include_usage": True}, 100))

    def test_usage_chunk_hidden_from_a_client_that_did_not_ask(self) -> None:
        """That client gets the stream without the usage chunk, which is counted all the
        same."""
        run = self.serve("/v1/chat/completions", _chat(stream=True),
                         _openai_stream(3, usage=(16, 3)))
        events = _events(run.body)
        self.assertEqual(len(events), 3 + 2)
        self.assertNotIn("usage", events[-2])
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 16, "completion_tokens": 3})

    def test_client_that_said_no_gets_none(self) -> None:
        """``include_usage: false`` is overridden upstream and the chunk kept from the
        client, whose other stream options are kept."""
        run = self.serve("/v1/chat/completions",
                         _chat(stream=True, stream_options={"include_usage": False,
                                                            "other": 1}),
                         _openai_stream(3, usage=(16, 3)))
        self.assertEqual(self.received(run)["stream_options"], {"include_usage": True,
                                                               "other": 1})
        self.assertFalse(any("usage" in e for e in _events(run.body) if e != "[DONE]"))

    def test_client_that_asked_gets_it(self) -> None:
        """A client that asked gets its usage chunk, and its request goes as it was."""
        body = _chat(stream=True, stream_options={"include_usage": True})
        run = self.serve("/v1/chat/completions", body, _openai_stream(3, usage=(16, 3)))
        self.assertEqual(self.received(run)["stream_options"], {"include_usage": True})
        self.assertEqual(_events(run.body)[-2]["usage"], {
            "prompt_tokens": 16, "completion_tokens": 3, "total_tokens": 19})

    def test_whole_answer_not_asked(self) -> None:
        """A request that does not stream gets no stream options."""
        run = self.serve("/v1/chat/completions", _chat(), Answer.json(
            {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        self.assertNotIn("stream_options", self.received(run))


class _LeavingClient(RecordingClient):
    """A client that disconnects once it got ``lines`` lines of the answer."""

    def __init__(self, body: Any, lines: int) -> None:
        super().__init__(_raw(body))
        self._lines = lines

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.body.count(b"\n") >= self._lines:
            self.leave()


class ClientLeavesTests(_UsageTestCase):
    """Answers that end early without the quota: a client that leaves, a runner that
    fails."""

    def test_client_leaving_charged_what_was_relayed(self) -> None:
        """A client that leaves mid-stream is charged what it was sent and the prompt's
        estimate; the runner's request is closed."""
        run = self.serve("/api/generate", _generate(), _native_stream(50),
                         client=_LeavingClient(_generate(), 5))
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 10, "completion_tokens": 5,
                                              "prompt_tokens_estimated": True})
        self.assertEqual(self.used(), 15)
        self.assertEqual(self.ledger.entries[0].truncated, 0)

    def test_charged_at_once(self) -> None:
        """The charge is counted as soon as the client leaves, while the runner's answer is
        still on its way."""
        gate = _Gate()
        client = RecordingClient(_raw(_generate()))
        run = self.start("/api/generate", _generate(), _native_stream(50), after=(gate,),
                         client=client)
        for _ in range(5):
            gate.held.pop(0).callback(None)
        self.assertEqual(self.used(), 10 + LEASE_BLOCK)  # the prompt and the first lease
        client.leave()
        self.successResultOf(run)
        self.assertEqual(self.used(), 15)

    def test_runner_error_charges_nothing(self) -> None:
        """An error from the runner costs nothing: the prompt's tokens go back."""
        run = self.serve("/api/generate", _generate(),
                         Answer.json({"error": "model runner has unexpectedly stopped"},
                                     status=500))
        self.assertEqual(run.status, 500)
        self.assertEqual(self.used(), 0)
        self.assertEqual((self.ledger.entries, run.exchange.notes), ([], {}))

    def test_runner_error_gives_back_a_whole_lease(self) -> None:
        """The cap taken for a whole answer goes back too."""
        run = self.serve("/v1/chat/completions", _chat(),
                         Answer.json({"error": {"message": "model not found"}}, status=404))
        self.assertEqual(run.status, 404)
        self.assertEqual(self.used(), 0)

    def test_refused_request_keeps_nothing(self) -> None:
        """A request refused by a later check (an unreadable cap) keeps nothing of the
        quota."""
        run = self.serve("/api/generate", _generate(options={"num_predict": "many"}),
                         _native_stream(3))
        self.assertEqual(run.status, 400)
        self.assertEqual(self.used(), 0)


class NoQuotaTests(_UsageTestCase):
    """A role without ``tokensPerDay``: nothing refused, usage counted all the same."""

    rules = RoleSettings("user", max_tokens=100)

    def test_nothing_refused(self) -> None:
        """However much the subject used, requests are served and streams relayed whole."""
        self.spend(10 ** 9)
        answer = _native_stream(300)
        run = self.serve("/api/generate", _generate(), answer)
        self.assertEqual(run.status, 200)
        self.assertEqual(run.body, b"".join(answer.chunks))

    def test_usage_counted_and_recorded(self) -> None:
        """Usage is still counted in the state and the ledger, and on the audit line."""
        run = self.serve("/api/generate", _generate(), _native_stream(5, prompt_eval_count=12))
        self.assertEqual(self.used(), 17)
        self.assertEqual(run.exchange.notes, {"prompt_tokens": 12, "completion_tokens": 5})
        self.assertEqual(len(self.ledger.entries), 1)

    def test_max_tokens_still_caps(self) -> None:
        """``maxTokens`` applies without a quota."""
        run = self.serve("/api/generate", _generate(options={"num_predict": 500}),
                         _native_stream(3))
        self.assertEqual(self.received(run)["options"], {"num_predict": 100})

    def test_client_leaving_counted(self) -> None:
        """A client leaving mid-stream is counted what it was sent."""
        self.serve("/api/generate", _generate(), _native_stream(50),
                   client=_LeavingClient(_generate(), 7))
        self.assertEqual(self.used(), 17)


class ReadyTests(_UsageTestCase):
    """Until today's usage is read from the ledger, requests wait."""

    def setUp(self) -> None:
        super().setUp()
        self.ledger = _Ledger()
        self.ledger.opening = Deferred()
        self.parts = LimitParts(LocalLimitState(self.clock),
                                QuotaDays(ZoneInfo("UTC"), self.clock), self.ledger)
        self.started = self.parts.start()

    def test_requests_wait(self) -> None:
        """A request waits, without reaching the runner, until the ledger was read."""
        run = self.start("/api/generate", _generate(), _native_stream(3))
        self.assertNoResult(run)
        self.ledger.opening.callback(None)
        self.assertEqual(self.successResultOf(run).status, 200)

    def test_usage_read_applies_to_waiting_requests(self) -> None:
        """What the ledger says was used today counts for the requests that waited."""
        self.ledger.totals = {"alice": 1000}
        run = self.start("/api/generate", _generate(), _native_stream(3))
        self.ledger.opening.callback(None)
        self.assertEqual(self.successResultOf(run).status, 429)

    def test_other_requests_do_not_wait(self) -> None:
        """Requests that run no model are served meanwhile."""
        run = self.start("/api/show", {"model": _MODEL}, Answer.json({}))
        self.assertEqual(self.successResultOf(run).status, 200)


class _LeavesAfterAdmission:
    """Placed after ``usage``: the client leaves once its request was admitted, before the
    runner answers (the server records ``client_gone``, as here)."""

    name = "leaves"

    def __init__(self, client: RecordingClient) -> None:
        self.client = client

    def request_body(self, exchange: Exchange) -> None:
        exchange.outcome = "client_gone"
        self.client.leave()


class ReviewedEdgeTests(_UsageTestCase):
    """Edges: empty embeddings, large whole answers, clients that leave early, templates."""

    def test_empty_embedding_input_admitted(self) -> None:
        """An embedding of nothing (an estimate of 0 tokens) is admitted, not refused as if
        the quota were spent."""
        run = self.serve("/api/embed", {"model": _MODEL, "input": ""},
                         Answer.json({"embeddings": [], "prompt_eval_count": 0}))
        self.assertEqual(run.status, 200)

    def test_large_whole_answer_counted(self) -> None:
        """A whole answer of megabytes (a batch of embeddings) is relayed and counted."""
        vectors = [[0.123456789] * 1024 for _ in range(120)]
        run = self.serve("/api/embed", {"model": _MODEL, "input": ["a"] * 120},
                         Answer.json({"embeddings": vectors, "prompt_eval_count": 240}))
        self.assertGreater(len(run.body), 1 << 20)
        self.assertEqual((run.status, run.exchange.notes["prompt_tokens"]), (200, 240))

    def test_client_gone_before_the_answer_charged_its_prompt(self) -> None:
        """A client that leaves before the runner's head (while Ollama reads the prompt) is
        charged the prompt's estimate: leaving early does not make prompts free."""
        client = RecordingClient(_raw(_generate()))
        run = self.successResultOf(self.start("/api/generate", _generate(), _native_stream(3),
                                              client=client,
                                              after=(_LeavesAfterAdmission(client),)))
        self.assertEqual(self.used(), _PROMPT_ESTIMATE)
        self.assertEqual(run.exchange.notes["prompt_tokens"], _PROMPT_ESTIMATE)
        self.assertEqual(len(self.ledger.entries), 1)

    def test_template_counted_in_the_estimate(self) -> None:
        """A prompt carried in ``template`` counts: it is no way round the quota."""
        run = self.serve("/api/generate", _generate(prompt="", template="y" * 8000),
                         _native_stream(3))
        self.assertEqual((run.status, run.json()["error"] if run.status != 200 else None),
                         (400, 'this prompt (about 2000 tokens) is larger than the daily '
                               'token quota of role "user" (1000)'))
