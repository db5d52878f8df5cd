"""What the ``usage`` filter keeps of one inference request while its answer is relayed."""

from __future__ import annotations

import json
from typing import Any

import attrs

from runnergw.config.roles import RoleSettings
from runnergw.limits.interfaces import TokenLease
from runnergw.ollama.endpoints import Endpoint

__all__ = ["UsageMeter", "stream_object"]


@attrs.define(eq=False)
class UsageMeter:
    """One inference request's token count as its answer is relayed."""

    key: str
    day: str
    rules: RoleSettings
    endpoint: Endpoint
    lease: TokenLease = attrs.Factory(TokenLease)
    """Tokens taken from the daily quota so far (the prompt's estimate, then generation),
    with the store that granted each part."""
    generation_lease: int = 0
    """Of those, the ones taken for generated tokens."""
    prompt_estimate: int = 0
    relayed: int = 0
    """Generated tokens relayed to the client so far (one streamed line or event each)."""
    reported: tuple[int, int] | None = None
    """(prompt, generated) as the runner reported them at the end."""
    hide_usage_event: bool = False
    """The gateway asked for the usage event of an OpenAI stream; the client did not."""
    truncated: bool = False
    stream_seen: bool = False
    """A line or event of the stream was read whole: the fields below are known."""
    stream_model: str | None = None
    stream_id: str | None = None
    stream_created: int | None = None
    """The model, chunk id and creation time the runner's stream gives: an ending the
    gateway makes repeats them, as every chunk of a stream has the same."""

    def note_stream(self, document: dict[str, Any]) -> None:
        """Keep what every later chunk of the stream repeats, from its first one."""
        self.stream_seen = True
        model, chunk_id, created = (document.get(key) for key in ("model", "id", "created"))
        if isinstance(model, str):
            self.stream_model = model
        if isinstance(chunk_id, str):
            self.stream_id = chunk_id
        if isinstance(created, int) and not isinstance(created, bool):
            self.stream_created = created

    @property
    def quota(self) -> int | None:
        return self.rules.tokens_per_day


def stream_object(meter: UsageMeter, data: bytes) -> dict[str, Any] | None:
    """A streamed line's (or event's) JSON object, None when it is none; the first one
    tells the meter the stream's model and id."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if not meter.stream_seen:
        meter.note_stream(document)
    return document
