"""The ``access`` filter: which Ollama endpoints and models a role may use, and the rewrites
its rules ask for (model aliases, a pinned ``keep_alive``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.config.roles import RoleSettings
from runnergw.filters.ollama_request import ollama_endpoint, ollama_request, store_fields
from runnergw.filters.role import role_rules
from runnergw.ollama.gojson import GoJsonError
from runnergw.ollama.model_names import ModelPatterns, normalize_model_name
from runnergw.ollama.rewrites import keep_alive_fields, model_fields, requested_model

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["AccessFilter", "RoleAccess"]

MODEL_LIST_LIMIT = 8 << 20
"""Largest model list (``/api/tags``…) read whole to filter it."""
_OPENAI_MODEL = "/v1/models/"


class RoleAccess:
    """One role's rules made ready for requests: compiled patterns, normalized aliases."""

    def __init__(self, rules: RoleSettings) -> None:
        self.rules = rules
        self.patterns = ModelPatterns(rules.models)
        self.aliases = {normalize_model_name(alias): normalize_model_name(target)
                        for alias, target in rules.aliases.items()}
        self.groups = frozenset(rules.api)

    def resolve(self, model: str) -> str:
        """The model Ollama is asked for (an alias resolved), or Reject 403."""
        try:
            name = normalize_model_name(model)
        except ValueError:
            shown = model if len(model) <= 100 else model[:100] + "…"
            raise Reject(400, f'"{shown}" is not a model name',
                         reason="bad model name") from None
        name = self.aliases.get(name, name)
        if not self.patterns.allows(name):
            raise Reject(403, f'model "{model}" is not available to role "{self.rules.name}"',
                         reason=f"model {name} not allowed")
        return name

    def lists(self, name: Any) -> bool:
        """True when a model list may show this entry."""
        try:
            return isinstance(name, str) and self.patterns.allows(normalize_model_name(name))
        except ValueError:
            return False


def _ask_path_for(exchange: Exchange, alias: str, name: str) -> None:
    """Make ``/v1/models/{alias}`` ask Ollama for the model ``name`` the alias stands for:
    left as it is, it would show a model of the alias's own name, which the role may not see.

    Raises:
        Reject: 404 when ``name`` has a ``/``: no single path segment can name it.
    """
    if "/" in name:
        raise Reject(404, f'model "{alias}" cannot be read by this path',
                     reason=f"alias of {name} in the path")
    exchange.upstream_path = exchange.api_path = _OPENAI_MODEL + name


def _role_access(roles: Mapping[str, RoleSettings]) -> dict[str, RoleAccess]:
    access = {}
    for name, rules in roles.items():
        try:
            access[name] = RoleAccess(rules)
        except ValueError as e:
            raise ValueError(f"roles.{name}: {e}") from e
    return access


@implementer(IFilter)
class AccessFilter:
    """Applies the caller's role to Ollama's API (after the ``role`` filter):

    - endpoints in groups the role is not given (``inference``, ``catalogue``,
      ``management``) are refused with 403; paths Ollama does not serve with 404;
    - the model a body names (read as Ollama's Go decoder reads it, bounded by
      ``policy.maxBodySize``) must match the role's ``models``, after its ``aliases``;
    - ``/api/tags``, ``/api/ps`` and ``/v1/models`` list only the models the role may use;
    - the role's ``keepAlive`` replaces the client's.
    """

    name = "access"
    after_any = ("role",)

    def __init__(self, roles: Mapping[str, RoleSettings], max_body_size: int) -> None:
        self.roles = _role_access(roles)
        self.max_body_size = max_body_size

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> AccessFilter:
        """The ``roles`` section and ``policy.maxBodySize``."""
        settings = context.settings
        if not settings.roles:
            raise ValueError("the access filter needs a roles section")
        return cls(settings.roles, settings.policy.max_body_size)

    def _access(self, exchange: Exchange) -> RoleAccess | None:
        rules = role_rules(exchange)
        return None if rules is None else self.roles[rules.name]

    def request_headers(self, exchange: Exchange) -> None:
        """Check the endpoint against the role; ask for what the later checks need."""
        access = self._access(exchange)
        if access is None:
            return
        endpoint = ollama_endpoint(exchange)
        if endpoint is None:
            raise Reject(404, f"{exchange.api_path} is not an Ollama endpoint served here",
                         reason="unknown endpoint")
        if exchange.method not in endpoint.methods:
            raise Reject(405, f"{exchange.method} is not allowed on {endpoint.path}",
                         headers=(("Allow", ", ".join(sorted(endpoint.methods))),),
                         reason="method not allowed")
        if endpoint.group != "basic" and endpoint.group not in access.groups:
            raise Reject(403, f'role "{access.rules.name}" may not use {endpoint.group} '
                              f"endpoints ({endpoint.path})",
                         reason=f"{endpoint.group} not allowed")
        if endpoint.names_model:
            exchange.collect_body(self.max_body_size)
        elif (model := endpoint.model_in_path(exchange.api_path)) is not None:
            exchange.model = name = access.resolve(model)
            if name != normalize_model_name(model):
                _ask_path_for(exchange, model, name)
        elif endpoint.lists_models:
            if exchange.method == "HEAD":
                # The length of the whole list would tell how many models are hidden: the
                # list is asked for and filtered, and the client gets its length only (the
                # server sends no body to a HEAD). The audit still says HEAD.
                exchange.method = "GET"
                exchange.notes["method"] = "HEAD"
            exchange.observe_response(self, MODEL_LIST_LIMIT)

    def request_body(self, exchange: Exchange) -> None:
        """Check the model the body names; resolve aliases and pin ``keep_alive``."""
        access = self._access(exchange)
        if access is None:
            return
        request = ollama_request(exchange)
        if request is None:
            return
        try:
            model = requested_model(request.body, request.endpoint)
        except GoJsonError as e:
            raise Reject(400, str(e), reason="body not readable") from None
        if not model:
            raise Reject(400, "model is required", reason="no model")
        name = access.resolve(model)
        request.model = exchange.model = name
        fields = {}
        if name != normalize_model_name(model):
            fields.update(model_fields(request.body, request.endpoint, name))
        if access.rules.keep_alive is not None:
            fields.update(keep_alive_fields(request.endpoint, access.rules.keep_alive))
        store_fields(exchange, request, fields)

    def response_body(self, exchange: Exchange, body: bytes) -> bytes | None:
        """Keep only the models the role may use in a model list."""
        access = self._access(exchange)
        if access is None or exchange.status != 200:
            return None
        try:
            listing = json.loads(body)
        except ValueError:
            raise Reject(502, "the runner's model list is not JSON",
                         reason="model list unreadable") from None
        if not isinstance(listing, dict):
            raise Reject(502, "the runner's model list is not a JSON object",
                         reason="model list unreadable")
        for key, name_key in (("models", "name"), ("data", "id")):
            entries = listing.get(key)
            if isinstance(entries, list):
                listing[key] = [entry for entry in entries if isinstance(entry, dict)
                                and access.lists(entry.get(name_key, entry.get("model")))]
        return json.dumps(listing, separators=(",", ":")).encode()
