"""Ollama's endpoints, as its router (gin) matches them, and what each one does.

Paths match exactly and case-sensitively, as gin matches them: ``/api/chat/`` is not
``/api/chat`` (gin answers it with a redirect to ``/api/chat`` and never runs the handler),
nor is ``/API/chat`` or ``/api//chat``. ``{model}`` and ``{digest}`` stand for one non-empty
path segment. Paths are compared decoded, as gin routes on the decoded path
(``/api/ch%61t`` is ``/api/chat``).

Ollama serves more routes than these (``/v1/responses``, ``/v1/messages``,
``/v1/images/generations``, ``/v1/audio/transcriptions``, ``/api/status``, ``/api/me``… in
recent versions), some of which run models: a policy filter must refuse a path
:func:`endpoint_for` does not know rather than let it through unread.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["GROUPS", "Endpoint", "endpoint_for"]

GROUPS: Final = ("basic", "inference", "catalogue", "management")
"""The groups endpoints fall in, from the most harmless to the most powerful."""

_MODEL_PREFIX: Final = "/v1/models/"


@attrs.frozen
class Endpoint:
    """One of Ollama's endpoints."""

    path: str
    """The route as Ollama declares it, ``{model}``/``{digest}`` for a path segment."""
    methods: frozenset[str]
    """The methods Ollama answers on it (another one gets 405)."""
    group: str
    """One of :data:`GROUPS`."""
    style: str
    """``ollama`` (native API) or ``openai`` (OpenAI-compatible API)."""
    kind: str
    """A short, stable name: ``chat``, ``openai_chat``, ``tags``…"""
    names_model: bool = False
    """The JSON body names a model in ``model`` (on the model-management endpoints and
    ``/api/show``, also in the older ``name``)."""
    generates: bool = False
    """The answer carries generated tokens."""
    lists_models: bool = False
    """The answer is a list of models (for filters to hide some)."""

    def model_in_path(self, api_path: str) -> str | None:
        """The model ``/v1/models/{model}`` names, from the decoded ``api_path`` this endpoint
        was found for; None for any other endpoint."""
        if self.kind != "openai_model" or not api_path.startswith(_MODEL_PREFIX):
            return None
        segment = api_path[len(_MODEL_PREFIX):]
        return segment if segment and "/" not in segment else None


def _endpoint(path: str, methods: str, group: str, kind: str, *, style: str = "ollama",
              names_model: bool = False, generates: bool = False,
              lists_models: bool = False) -> Endpoint:
    return Endpoint(path=path, methods=frozenset(methods.split()), group=group, style=style,
                    kind=kind, names_model=names_model, generates=generates,
                    lists_models=lists_models)


_FIXED: Final = {endpoint.path: endpoint for endpoint in (
    _endpoint("/", "GET HEAD", "basic", "root"),
    _endpoint("/api/version", "GET HEAD", "basic", "version"),
    _endpoint("/api/generate", "POST", "inference", "generate", names_model=True,
              generates=True),
    _endpoint("/api/chat", "POST", "inference", "chat", names_model=True, generates=True),
    _endpoint("/api/embed", "POST", "inference", "embed", names_model=True),
    _endpoint("/api/embeddings", "POST", "inference", "embeddings", names_model=True),
    _endpoint("/v1/chat/completions", "POST", "inference", "openai_chat", style="openai",
              names_model=True, generates=True),
    _endpoint("/v1/completions", "POST", "inference", "openai_completions", style="openai",
              names_model=True, generates=True),
    _endpoint("/v1/embeddings", "POST", "inference", "openai_embeddings", style="openai",
              names_model=True),
    _endpoint("/api/tags", "GET HEAD", "catalogue", "tags", lists_models=True),
    _endpoint("/api/show", "POST", "catalogue", "show", names_model=True),
    _endpoint("/api/ps", "GET", "catalogue", "ps", lists_models=True),
    _endpoint("/v1/models", "GET", "catalogue", "openai_models", style="openai",
              lists_models=True),
    _endpoint("/api/pull", "POST", "management", "pull", names_model=True),
    _endpoint("/api/push", "POST", "management", "push", names_model=True),
    _endpoint("/api/delete", "DELETE", "management", "delete", names_model=True),
    _endpoint("/api/copy", "POST", "management", "copy"),
    _endpoint("/api/create", "POST", "management", "create", names_model=True),
)}

_BY_SEGMENT: Final = {
    _MODEL_PREFIX: _endpoint("/v1/models/{model}", "GET", "catalogue", "openai_model",
                             style="openai"),
    "/api/blobs/": _endpoint("/api/blobs/{digest}", "HEAD POST", "management", "blobs"),
}


def endpoint_for(api_path: str) -> Endpoint | None:
    """The endpoint Ollama routes the decoded ``api_path`` (the path after the runner prefix)
    to, or None for a path it routes nowhere or that this module does not read.

    For ``/v1/models/{model}``, :meth:`Endpoint.model_in_path` gives the model.
    """
    endpoint = _FIXED.get(api_path)
    if endpoint is not None:
        return endpoint
    for prefix, endpoint in _BY_SEGMENT.items():
        if api_path.startswith(prefix):
            segment = api_path[len(prefix):]
            return endpoint if segment and "/" not in segment else None
    return None
