"""Ollama's answers: the token counts they report, and a well-formed end for a stream the
gateway cuts short.

A native stream (``/api/generate``, ``/api/chat``) is NDJSON whose last object has
``"done": true`` and the counts; an OpenAI-style stream is server-sent events whose chunks
may carry ``usage`` (with ``stream_options.include_usage``, in one last chunk with no
choices), ended by ``data: [DONE]``. The endings made here are what Ollama itself sends when
a model stops at its token limit (``done_reason``/``finish_reason`` ``length``), so clients
read them as they read a normal end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["carries_text", "embed_usage", "is_usage_only_event", "native_final_line",
           "native_usage", "openai_final_events", "openai_usage", "sse_data"]


def _count(value: Any) -> int:
    """A reported count, 0 when it is missing or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def native_usage(line: Mapping[str, Any]) -> tuple[int, int] | None:
    """(prompt tokens, generated tokens) from a native answer's final object (``"done":
    true``), a missing counter being 0; None for any other object."""
    if line.get("done") is not True:
        return None
    return _count(line.get("prompt_eval_count")), _count(line.get("eval_count"))


def openai_usage(obj: Mapping[str, Any]) -> tuple[int, int] | None:
    """(prompt tokens, completion tokens) from an OpenAI-style answer or chunk that carries
    ``usage`` (embeddings report no completion tokens: 0); None when it carries none."""
    usage = obj.get("usage")
    if not isinstance(usage, Mapping):
        return None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def is_usage_only_event(obj: Mapping[str, Any]) -> bool:
    """Whether an OpenAI-style chunk is the usage-only one ``stream_options.include_usage``
    adds at the end: ``usage`` set and no choices."""
    return isinstance(obj.get("usage"), Mapping) and obj.get("choices") == []


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def native_final_line(kind: str, model: str, created_at: str, prompt_tokens: int,
                      completion_tokens: int) -> bytes:
    """The last NDJSON line (without its newline) of a native stream ended early.

    ``kind`` is the endpoint's (``generate`` or ``chat``), ``created_at`` an RFC 3339 time.

    Raises:
        ValueError: another ``kind``.
    """
    answer: dict[str, Any] = {"model": model, "created_at": created_at}
    if kind == "generate":
        answer["response"] = ""
    elif kind == "chat":
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        raise ValueError(f"no native stream for {kind!r}")
    answer.update(done=True, done_reason="length", prompt_eval_count=prompt_tokens,
                  eval_count=completion_tokens)
    return _json(answer)


_OPENAI_CHOICE: Final = {
    "openai_chat": ("chat.completion.chunk", {"index": 0, "delta": {}, "finish_reason": "length"}),
    "openai_completions": ("text_completion",
                           {"index": 0, "text": "", "finish_reason": "length"}),
}


def openai_final_events(kind: str, model: str, created: int, chunk_id: str) -> bytes:
    """The last events of an OpenAI-style stream ended early: a chunk finishing with
    ``length``, then ``data: [DONE]``, without the blank line that ends the last event.

    ``kind`` is the endpoint's (``openai_chat`` or ``openai_completions``), ``created`` the
    stream's Unix time, ``chunk_id`` its id (every chunk of a stream has the same).

    Raises:
        ValueError: another ``kind``.
    """
    if kind not in _OPENAI_CHOICE:
        raise ValueError(f"no OpenAI-style stream for {kind!r}")
    kind_object, choice = _OPENAI_CHOICE[kind]
    chunk = {"id": chunk_id, "object": kind_object, "created": created, "model": model,
             "system_fingerprint": "fp_ollama", "choices": [choice]}
    return b"data: " + _json(chunk) + b"\n\ndata: [DONE]"


def sse_data(event: bytes) -> bytes | None:
    """The data of an SSE event (its ``data:`` lines joined), None when it has none."""
    parts = [line[5:].lstrip(b" ") for line in event.split(b"\n")
             if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


def carries_text(chunk: Mapping[str, Any]) -> bool:
    """True when an OpenAI stream chunk carries generated text (or a tool call)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")
                                        or delta.get("reasoning")):
            return True
        if choice.get("text"):
            return True
    return False


def embed_usage(document: Mapping[str, Any]) -> tuple[int, int] | None:
    """``/api/embed``'s counts, (prompt tokens, 0): it reports them without ``done``."""
    count = document.get("prompt_eval_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count, 0
    return None
