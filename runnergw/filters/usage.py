"""The ``usage`` filter: tokens counted as they are relayed, per-request caps and daily
quotas that hold mid-stream, and the usage ledger."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import EndStream, Exchange, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.config.roles import RoleSettings
from runnergw.filters.ollama_request import ollama_endpoint, ollama_request, store_fields
from runnergw.filters.role import role_rules, subject_key
from runnergw.filters.usage_meter import UsageMeter, stream_object
from runnergw.limits.admission import admission_for
from runnergw.limits.checks import LeaseCheck
from runnergw.limits.interfaces import when_known
from runnergw.limits.parts import LimitParts
from runnergw.ollama.answers import (
    carries_text,
    embed_usage,
    is_usage_only_event,
    native_final_line,
    native_usage,
    openai_final_events,
    openai_usage,
    sse_data,
)
from runnergw.ollama.endpoints import Endpoint
from runnergw.ollama.gojson import GoJsonError
from runnergw.ollama.rewrites import (
    answer_streams,
    estimate_prompt_tokens,
    generation_cap,
    usage_not_asked,
)

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["LEASE_BLOCK", "WHOLE_ANSWER_LIMIT", "UsageFilter"]

LEASE_BLOCK = 16
"""Generated tokens a stream takes from its subject's daily quota at a time: a stream asks
the shared state once per this many tokens, and at most this many minus one are held back
from the subject's other streams."""

_METER = "usage.meter"

WHOLE_ANSWER_LIMIT = 64 << 20
"""Largest whole (not streamed) answer read for its counts: embeddings of a large batch are
megabytes; an answer above it is a 502, never relayed uncounted."""

_UNBOUNDED = 1 << 62
"""The cap of a role without ``maxTokens``: the client's own limit, or none."""


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


@implementer(IFilter)
class UsageFilter:
    """Counts the tokens of Ollama inference requests (after ``role``; ``access`` first when
    aliases should be counted under the real model).

    - Before the runner is asked: a subject whose role's ``tokensPerDay`` is spent gets 429
      until the day ends (``policy.timeZone``); the prompt's estimated tokens are taken from
      the quota; the generation cap sent upstream is the smaller of ``maxTokens`` and what
      is left of the quota (a client asking for less keeps its figure).
    - While a stream is relayed, each NDJSON line or SSE event carrying generated text is a
      token, taken from the quota ``LEASE_BLOCK`` at a time; when none is left the answer
      ends with a well-formed last line (``done_reason: "length"``, the counts so far) and
      the runner's request is closed.
    - At the end the runner's own counts (``prompt_eval_count``/``eval_count``, OpenAI
      ``usage``) replace the estimates; a stream cut short (by the quota, or a client that
      left) is charged what was relayed and the prompt's estimate. The audit line gets
      ``prompt_tokens``/``completion_tokens``; the ledger a row per subject, model and day.
    """

    name = "usage"
    after_any = ("role",)
    done_before = ("audit",)
    """The audit line carries the counts this filter's ``done`` settles."""

    def __init__(self, limits: LimitParts, max_body_size: int) -> None:
        self.limits = limits
        self.state = limits.state
        self.max_body_size = max_body_size

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> UsageFilter:
        """Uses the gateway's limit state, quota days and ledger."""
        if context.limits is None:
            raise ValueError("the usage filter needs a roles section")
        return cls(context.limits, context.settings.policy.max_body_size)

    # Before the runner.

    def request_headers(self, exchange: Exchange) -> Any:
        """Refuse a subject whose daily quota is spent; ask for the body and the answer."""
        rules = role_rules(exchange)
        endpoint = ollama_endpoint(exchange)
        if rules is None or endpoint is None or endpoint.group != "inference":
            return None
        waiting = self.limits.ready()
        if waiting is not None:
            return waiting.addCallback(lambda _: self._admit(exchange, rules, endpoint))
        return self._admit(exchange, rules, endpoint)

    def _admit(self, exchange: Exchange, rules: RoleSettings, endpoint: Endpoint) -> Any:
        meter = UsageMeter(subject_key(exchange), self.limits.days.today(), rules, endpoint)
        exchange.metadata[_METER] = meter
        exchange.collect_body(self.max_body_size)
        exchange.observe_response(self, WHOLE_ANSWER_LIMIT)
        if meter.quota is None:
            return None
        # The other limit checks wait for the lease this filter asks for once the body is
        # in, to be made with it (a small body).
        admission_for(exchange, self.state).hold(exchange.content_length)
        used = self.state.tokens_used(meter.key, meter.day)
        return when_known(used, lambda count: self._check_spent(meter, count))

    def _quota_spent(self, meter: UsageMeter, message: str) -> Reject:
        wait = max(1, math.ceil(self.limits.days.seconds_to_reset()))
        return Reject(429, message, headers=(("Retry-After", str(wait)),),
                      reason="daily token quota spent")

    def _check_spent(self, meter: UsageMeter, used: int) -> None:
        if meter.quota is not None and used >= meter.quota:
            raise self._quota_spent(meter, f'the daily token quota of role "{meter.rules.name}"'
                                           f" ({meter.quota}) is spent until the day ends")

    def request_body(self, exchange: Exchange) -> Any:
        """Take the prompt's tokens from the quota and cap the generation."""
        meter: UsageMeter | None = exchange.metadata.get(_METER)
        request = ollama_request(exchange)
        if meter is None or request is None:
            return None
        try:
            meter.prompt_estimate = estimate_prompt_tokens(request.body, meter.endpoint)
        except GoJsonError as e:
            raise Reject(400, str(e), reason="body not readable") from None
        if meter.quota is None:
            return self._cap(exchange, meter, request, meter.rules.max_tokens)
        if meter.prompt_estimate > meter.quota:
            raise Reject(400, f"this prompt (about {meter.prompt_estimate} tokens) is larger "
                              f'than the daily token quota of role "{meter.rules.name}" '
                              f"({meter.quota})", reason="prompt over the daily quota")
        prompt = meter.prompt_estimate
        generates = meter.endpoint.generates
        whole = generates and not answer_streams(request.body, meter.endpoint)
        if whole:
            # A whole answer cannot be cut: as many tokens as it may have (the client's own
            # limit counting) are taken before it is asked for.
            try:
                asked, _ = generation_cap(request.body, meter.endpoint,
                                          meter.rules.max_tokens or _UNBOUNDED)
            except GoJsonError as e:
                raise Reject(400, str(e), reason="body not readable") from None
            want = prompt + (asked or 0)
        else:
            want = prompt  # a stream takes its tokens as they come
        need = prompt + 1 if generates else prompt
        admission = admission_for(exchange, self.state)
        made = admission.add(
            LeaseCheck(meter.key, meter.day, meter.quota, want, need, meter.lease),
            lambda answered: self._leased(exchange, meter, request, whole, answered))
        # The last check: the ones held for it are made with it.
        return made if made is not None else admission.settle()

    def _leased(self, exchange: Exchange, meter: UsageMeter, request: Any, whole: bool,
                check: LeaseCheck) -> None:
        prompt = meter.prompt_estimate
        granted, left = check.granted or 0, check.left
        # A lease takes nothing when less than ``need`` is left (and at least
        # min(want, need) when it succeeds).
        if check.refused:
            if 0 < left < prompt:  # none left: spent (elsewhere, since this node looked)
                raise self._quota_spent(meter, f"this prompt needs about {prompt} tokens; the "
                                               f'daily quota of role "{meter.rules.name}" has '
                                               f"{left} left")
            raise self._quota_spent(meter, f'the daily token quota of role "{meter.rules.name}"'
                                           f" ({meter.quota}) is spent until the day ends")
        if whole:
            meter.generation_lease = cap = granted - prompt
        else:
            cap = left if meter.rules.max_tokens is None else min(left, meter.rules.max_tokens)
        self._cap(exchange, meter, request, cap)

    def _cap(self, exchange: Exchange, meter: UsageMeter, request: Any, cap: int | None) -> None:
        if not meter.endpoint.generates:
            return
        fields: dict[str, Any] = {}
        try:
            if cap is not None:
                fields.update(generation_cap(request.body, meter.endpoint, cap)[1])
            if meter.endpoint.style == "openai" and usage_not_asked(request.body):
                fields["stream_options"] = {"include_usage": True}
                meter.hide_usage_event = True
        except GoJsonError as e:
            raise Reject(400, str(e), reason="body not readable") from None
        store_fields(exchange, request, fields)

    # While the answer is relayed.

    def response_line(self, exchange: Exchange, line: bytes) -> Any:
        """Count a generated token; end the stream when the quota has none left."""
        meter: UsageMeter | None = exchange.metadata.get(_METER)
        if meter is None or exchange.status != 200:
            return None
        # Lines that only carry a token are counted unread; the first one is read for the
        # stream's model and id.
        if exchange.response_framing == "sse":
            if (b'"finish_reason":null' not in line or b'"usage"' in line
                    or not meter.stream_seen):
                return self._sse_event(exchange, meter, line)
        elif b'"done":false' not in line or not meter.stream_seen:
            return self._native_line(exchange, meter, line)
        return self._generated(exchange, meter)

    def _native_line(self, exchange: Exchange, meter: UsageMeter, line: bytes) -> Any:
        document = stream_object(meter, line)
        if document is None:
            return None
        reported = native_usage(document)
        if reported is not None:
            meter.reported = reported
            return None
        if document.get("done") is False:
            return self._generated(exchange, meter)
        return None

    def _sse_event(self, exchange: Exchange, meter: UsageMeter, event: bytes) -> Any:
        data = sse_data(event)
        document = None if data is None or data == b"[DONE]" else stream_object(meter, data)
        if document is None:
            return None
        reported = openai_usage(document)
        if reported is not None:
            meter.reported = reported
        if is_usage_only_event(document):
            return b"" if meter.hide_usage_event else None
        if not carries_text(document):
            return None
        return self._generated(exchange, meter)

    def _generated(self, exchange: Exchange, meter: UsageMeter) -> Any:
        meter.relayed += 1
        if meter.quota is None or meter.relayed <= meter.generation_lease:
            return None
        lease = self.state.lease_tokens(meter.key, meter.day, meter.quota, LEASE_BLOCK,
                                        lease=meter.lease)
        return when_known(lease, lambda result: self._more_leased(exchange, meter, result[0]))

    def _more_leased(self, exchange: Exchange, meter: UsageMeter, granted: int) -> None:
        meter.generation_lease += granted
        if meter.relayed <= meter.generation_lease:
            return
        meter.relayed -= 1  # this token is not relayed: the last line takes its place
        meter.truncated = True
        raise EndStream(self._last_line(exchange, meter), reason="daily token quota reached")

    def _last_line(self, exchange: Exchange, meter: UsageMeter) -> bytes:
        model = meter.stream_model or exchange.model or ""
        if meter.endpoint.style == "openai":
            created = int(exchange.started) if meter.stream_created is None \
                else meter.stream_created
            return openai_final_events(meter.endpoint.kind, model, created,
                                       meter.stream_id or f"runnergw-{exchange.request_id}")
        return native_final_line(meter.endpoint.kind, model,
                                 _rfc3339(self.limits.days.clock.seconds()),
                                 meter.prompt_estimate, meter.relayed)

    def response_body(self, exchange: Exchange, body: bytes) -> None:
        """Read the counts of a whole (not streamed) answer."""
        meter: UsageMeter | None = exchange.metadata.get(_METER)
        if meter is None or exchange.status != 200:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if isinstance(document, dict):
            if meter.endpoint.style == "openai":
                meter.reported = openai_usage(document)
            else:
                meter.reported = native_usage(document) or embed_usage(document)
        return None

    # Afterwards.

    def done(self, exchange: Exchange) -> None:
        """Charge what was used, give back what was leased and not used, record it."""
        meter: UsageMeter | None = exchange.metadata.pop(_METER, None)
        if meter is None:
            return
        # A client that left once its request was admitted made Ollama read the prompt
        # (at least): it is charged, answer head or not.
        leased = meter.lease.tokens
        answered = exchange.status == 200 or (exchange.outcome == "client_gone"
                                              and leased > 0)
        if meter.reported is not None:
            prompt, generated = meter.reported
            estimated = False
        elif answered:
            prompt, generated, estimated = meter.prompt_estimate, meter.relayed, True
        else:
            prompt, generated, estimated = 0, 0, False
        if leased or prompt or generated:
            # Each part of the lease goes back to the store that granted it.
            self.state.settle_lease(meter.key, meter.day, meter.lease, prompt + generated)
        if not answered:
            return
        exchange.notes["prompt_tokens"] = prompt
        exchange.notes["completion_tokens"] = generated
        if estimated:
            exchange.notes["prompt_tokens_estimated"] = True
        assert exchange.identity is not None
        self.limits.record_request(meter.day, meter.key, meter.rules.name,
                                   exchange.model or "", prompt, generated,
                                   int(meter.truncated))
