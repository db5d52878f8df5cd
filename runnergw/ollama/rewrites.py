"""What a request body asks of Ollama, and rewrites of it, for policy filters.

Every function reads the body as Ollama does (:mod:`runnergw.ollama.gojson`) and returns a
new :class:`~runnergw.ollama.gojson.JsonObject`, never changing the one given. A rewritten
field is written once, under its own name, every other spelling of it removed.

Prompt size estimate (:func:`estimate_prompt_tokens`), for answers that end before Ollama
reports ``prompt_eval_count`` (a stream cut short): one token per 4 bytes of UTF-8, rounded
up, of the text the model reads, plus 768 tokens per image and 4 per chat message (its
role's markup). The text is:

* ``/api/generate``: ``prompt``, ``system`` and ``suffix``, plus one token per entry of
  ``context`` (tokens of an earlier answer); images in ``images``;
* ``/api/chat``: each message's ``content``, and the tool definitions (``tools``) as JSON;
  images in each message's ``images``;
* ``/v1/chat/completions``: each message's ``content``, a string or the ``text`` of its
  ``text`` parts; ``image_url`` parts are images; ``tools`` as JSON;
* ``/v1/completions``: ``prompt``, a string or a list of strings;
* ``/api/embed`` and ``/v1/embeddings``: ``input``, a string or a list of strings;
  ``/api/embeddings``: ``prompt``.

An endpoint that generates is estimated at one token at least; one that does not read a
prompt at zero.
"""

from __future__ import annotations

import math
from typing import Any, Final

from runnergw.ollama.endpoints import Endpoint
from runnergw.ollama.gojson import REMOVE, GoJsonError, GoType, JsonObject
from runnergw.ollama.gojson_writing import encode
from runnergw.ollama.model_names import normalize_model_name

__all__ = ["answer_streams", "estimate_prompt_tokens", "generation_cap", "keep_alive_fields",
           "model_fields", "requested_model", "usage_not_asked"]

_LEGACY_NAME: Final = frozenset({"show", "pull", "push", "delete", "create"})
"""Endpoints that take the model in ``name`` when ``model`` is empty (older clients)."""
_KEEPS_ALIVE: Final = frozenset({"generate", "chat", "embed", "embeddings"})
"""Endpoints whose ``keep_alive`` Ollama reads."""
_IMAGE_TOKENS: Final = 768
_MESSAGE_TOKENS: Final = 4


def _string(body: JsonObject, name: str) -> str | None:
    """The string field ``name`` (a Go ``string``: a ``null`` leaves it as it was)."""
    value = body.get(name, go_type=GoType.SCALAR)
    if value is not None and not isinstance(value, str):
        raise GoJsonError(f"{name} must be a string")
    return value


def _same_model(first: str, second: str) -> bool:
    try:
        return normalize_model_name(first) == normalize_model_name(second)
    except ValueError:
        return first == second


def requested_model(body: JsonObject, endpoint: Endpoint) -> str | None:
    """The model the request names, as given (normalize it with
    :func:`~runnergw.ollama.model_names.normalize_model_name`), or None when it names none.

    That is ``model``; on ``/api/show`` and the model-management endpoints (pull, push,
    delete, create), ``name`` when ``model`` is empty, as Ollama reads them. The model of
    ``/v1/models/{model}`` is in the path (:meth:`Endpoint.model_in_path`).

    Raises:
        GoJsonError: ``model`` or ``name`` is not a string, or both are set and name
            different models.
    """
    if not endpoint.names_model:
        return None
    model = _string(body, "model")
    if endpoint.kind not in _LEGACY_NAME:
        return model or None
    name = _string(body, "name")
    if model and name and not _same_model(model, name):
        raise GoJsonError("both model and name are set")
    return model or name or None


def model_fields(body: JsonObject, endpoint: Endpoint, name: str) -> dict[str, Any]:
    """The fields to set so that Ollama runs the model ``name``: ``model``, and the older
    ``name`` removed where the body gives it (``REMOVE``)."""
    fields: dict[str, Any] = {"model": name}
    if endpoint.kind in _LEGACY_NAME and body.has("name"):
        fields["name"] = REMOVE
    return fields


def keep_alive_fields(endpoint: Endpoint, value: str | int) -> dict[str, Any]:
    """The field to append to pin ``keep_alive`` on the endpoints that read it (none on the
    others)."""
    return {"keep_alive": value} if endpoint.kind in _KEEPS_ALIVE else {}


def _count(value: Any, label: str, *, whole_floats: bool) -> int | None:
    """A token count as given, None when not given.

    Raises:
        GoJsonError: not an integer (``whole_floats``: a float without a fraction counts).
    """
    if value is None:
        return None
    if isinstance(value, float) and whole_floats and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GoJsonError(f"{label} must be an integer")
    return value


def _capped(asked: int | None, cap: int) -> int:
    """At most ``cap``: no count, 0 (no limit for Ollama's runners) or a negative one (-1
    forever, -2 until the context is full) become ``cap``."""
    return cap if asked is None or asked <= 0 else min(asked, cap)


def generation_cap(body: JsonObject, endpoint: Endpoint,
                   cap: int) -> tuple[int | None, dict[str, Any]]:
    """How many tokens the request may generate once capped at ``cap``, and the top-level
    fields to append (``append_fields``) so that Ollama reads that cap: ``{}`` when the body
    already asks for no more. The limit is None for endpoints that generate nothing.

    What the client asked is lowered, never raised. Native generate and chat:
    ``options.num_predict`` (an ``options`` object appended: Go adds its members to the
    client's); OpenAI chat: ``max_tokens``, the field Ollama reads, always set (to
    ``max_completion_tokens`` when only that one is given), and ``max_completion_tokens``
    lowered too when given; OpenAI completions: ``max_tokens``. A count of 0 or less means no
    limit to Ollama, so it becomes ``cap``.

    Raises:
        GoJsonError: a count is not an integer (``options.num_predict`` may be a float
            without a fraction, as Ollama reads it), or ``options`` is not an object.
        ValueError: ``cap`` is not a positive integer.
    """
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError("cap must be a positive integer")
    if not endpoint.generates:
        return None, {}
    if endpoint.style == "ollama":
        options = body.get("options", go_type=GoType.OBJECT) or JsonObject(())
        asked = _count(options.get_exact("num_predict"), "options.num_predict",
                       whole_floats=True)
        limit = _capped(asked, cap)
        return limit, ({} if limit == asked else {"options": {"num_predict": limit}})
    fields: dict[str, Any] = {}
    asked = _count(body.get("max_tokens"), "max_tokens", whole_floats=False)
    limit = _capped(asked, cap)
    if endpoint.kind == "openai_chat":
        completion = _count(body.get("max_completion_tokens"), "max_completion_tokens",
                            whole_floats=False)
        if completion is not None:
            completion_limit = _capped(completion, cap)
            if completion_limit != completion:
                fields["max_completion_tokens"] = completion_limit
            if asked is None:
                limit = completion_limit
    if limit != asked:
        fields["max_tokens"] = limit
    return limit, fields


def _utf8_size(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _strings_size(value: Any) -> int:
    """UTF-8 size of a string, or of the strings in a list."""
    if isinstance(value, list):
        return sum(_utf8_size(item) for item in value)
    return _utf8_size(value)


def _read(body: JsonObject, name: str, go_type: GoType) -> Any:
    """A field for the estimate: None when Ollama would refuse it anyway."""
    try:
        return body.get(name, go_type=go_type)
    except GoJsonError:
        return None


def _objects(value: Any) -> list[JsonObject]:
    return [item for item in value if isinstance(item, JsonObject)] \
        if isinstance(value, list) else []


def _openai_content(content: Any) -> tuple[int, int]:
    """(text bytes, images) of an OpenAI message's content."""
    if not isinstance(content, list):
        return _utf8_size(content), 0
    size = images = 0
    for part in _objects(content):
        kind = part.get_exact("type")
        if kind == "text":
            size += _utf8_size(part.get_exact("text"))
        elif kind == "image_url":
            images += 1
    return size, images


def _chat_size(body: JsonObject, *, openai: bool) -> tuple[int, int]:
    """(text bytes, extra tokens) of a chat: messages, their images, tool definitions."""
    size = extra = 0
    for message in _objects(_read(body, "messages", GoType.SLICE)):
        extra += _MESSAGE_TOKENS
        if openai:
            text, images = _openai_content(_read(message, "content", GoType.ANY))
        else:
            text = _utf8_size(_read(message, "content", GoType.SCALAR))
            text += _utf8_size(_read(message, "thinking", GoType.SCALAR))
            images = len(_read(message, "images", GoType.SLICE) or ())
        calls = _read(message, "tool_calls", GoType.SLICE)
        if calls:
            text += len(encode(calls))
        size += text
        extra += _IMAGE_TOKENS * images
    tools = _read(body, "tools", GoType.SLICE)
    if tools:
        size += len(encode(tools))
    return size, extra


def estimate_prompt_tokens(body: JsonObject, endpoint: Endpoint) -> int:
    """The prompt tokens of the request, by the rule in the module's notes. Never raises."""
    kind = endpoint.kind
    size = extra = 0
    if kind == "generate":
        size = sum(_utf8_size(_read(body, name, GoType.SCALAR))
                   for name in ("prompt", "system", "suffix", "template"))
        extra = _IMAGE_TOKENS * len(_read(body, "images", GoType.SLICE) or ())
        extra += len(_read(body, "context", GoType.SLICE) or ())
    elif kind in ("chat", "openai_chat"):
        size, extra = _chat_size(body, openai=kind == "openai_chat")
    elif kind == "openai_completions":
        size = _strings_size(_read(body, "prompt", GoType.ANY))
    elif kind in ("embed", "openai_embeddings"):
        size = _strings_size(_read(body, "input", GoType.ANY))
    elif kind == "embeddings":
        size = _utf8_size(_read(body, "prompt", GoType.SCALAR))
    tokens = math.ceil(size / 4) + extra
    return max(tokens, 1) if endpoint.generates else tokens


def answer_streams(body: JsonObject, endpoint: Endpoint) -> bool:
    """Whether the answer streams: Ollama's API streams unless ``stream`` is false, the
    OpenAI-compatible one only when it is true."""
    if endpoint.style == "openai":
        # A Go bool there: a null leaves it as it was.
        return body.get("stream", go_type=GoType.SCALAR) is True
    return body.get("stream") is not False  # a *bool: null is "not given", which streams


def usage_not_asked(body: JsonObject) -> bool:
    """True for an OpenAI stream whose client did not ask for the usage event
    (``stream_options.include_usage``): the gateway asks for it (an object appended: Go adds
    its members to the client's) and keeps it from the client."""
    if body.get("stream", go_type=GoType.SCALAR) is not True:
        return False
    options = body.get("stream_options", go_type=GoType.OBJECT)
    return options is None or options.get("include_usage", go_type=GoType.SCALAR) is not True
