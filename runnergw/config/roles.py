"""The ``roles`` section: what each role may do on Ollama routes, and its limits."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from runnergw.config.errors import Origin
from runnergw.config.reader import MapReader, describe, parse_go_duration
from runnergw.ollama.model_names import ModelPatterns, normalize_model_name

__all__ = ["API_GROUPS", "DEFAULT_API_GROUPS", "RoleSettings", "read_roles"]

API_GROUPS = ("inference", "catalogue", "management")
"""Groups of Ollama endpoints a role may be given (``GET /`` and ``/api/version`` are open
to every role)."""

DEFAULT_API_GROUPS = ("inference", "catalogue")
"""A role that does not say gets these: model management is never given by default."""

MAX_CONCURRENCY_WAIT = 60.0
"""The longest a request may wait for a concurrency slot: longer belongs in a queue."""


@attrs.frozen
class RoleSettings:
    """One role: which models and endpoint groups it may use, and its limits.

    A limit left out is no limit. Counts are per subject (the token's ``sub``).
    """

    name: str
    models: tuple[str, ...] = ("*",)
    """Glob patterns of the models the role may use (``llama3.2:*``); ``*`` is every model."""
    api: tuple[str, ...] = DEFAULT_API_GROUPS
    requests_per_minute: int | None = None
    burst: int | None = None
    """Requests a subject may make at once before the per-minute rate applies (default: the
    per-minute figure)."""
    concurrency: int | None = None
    """Requests a subject may have under way at once (streams count until they end)."""
    concurrency_wait: float = 0.0
    """How long a request over the concurrency limit waits for a slot before its 429."""
    max_tokens: int | None = None
    """Most tokens generated for one request: lowers what the client asks, never raises it."""
    tokens_per_day: int | None = None
    """Prompt plus generated tokens a subject may use per day."""
    aliases: Mapping[str, str] = attrs.field(factory=dict)
    """Model names the role may ask for → the model Ollama is asked for (one the role's
    ``models`` allow)."""
    keep_alive: str | int | None = None
    """Pinned ``keep_alive`` sent to Ollama whatever the client asks (a duration or seconds)."""
    yaml_path: str = ""
    origins: Mapping[str, Origin] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def burst_size(self) -> int:
        """The bucket size of the rate limit (``burst``, else the per-minute figure)."""
        if self.burst is not None:
            return self.burst
        return self.requests_per_minute or 0

    def origin_of(self, key: str) -> Origin:
        """Where ``key`` of this role was written (the role itself when absent)."""
        return self.origins.get(key, self.origins.get("", Origin("")))


def _optional_integer(section: MapReader, key: str, minimum: int) -> int | None:
    if section.raw(key) is None:
        return None
    return section.integer(key, minimum, minimum)


_SECONDS = re.compile(r"-?[0-9]+")
_GO_DURATION_LIMIT = (1 << 63) / 1e9
"""Go durations are int64 nanoseconds: Ollama refuses a longer ``keep_alive``."""


def _keep_alive(section: MapReader) -> str | int | None:
    """A Go duration string or whole seconds (a number: Ollama parses a string as a Go
    duration, which needs a unit, so ``"300"`` or ``"-1"`` in a string would make it refuse
    every request)."""
    value = section.raw("keepAlive")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        section.error("keepAlive", f"expected a duration such as 5m (or -1: forever), got "
                                   f"{describe(value)}")
        return None
    if isinstance(value, str):
        text = value.strip()
        if _SECONDS.fullmatch(text):
            value = int(text)
        else:
            try:
                if not text.isascii():
                    raise ValueError("not ASCII")
                seconds = parse_go_duration(text[1:] if text.startswith("-") else text)
            except ValueError:
                section.error("keepAlive", f'"{value}" is not a duration such as 5m, 1h or -1')
                return None
            if seconds >= _GO_DURATION_LIMIT:
                section.error("keepAlive", f'"{value}" is longer than Ollama can read '
                                           "(use -1: forever)")
                return None
            return text
    if value >= _GO_DURATION_LIMIT:
        section.error("keepAlive", f"{value} seconds is longer than Ollama can read "
                                   "(use -1: forever)")
        return None
    return value


def _models(section: MapReader) -> tuple[tuple[str, ...], ModelPatterns | None]:
    """The ``models`` patterns, and them compiled (None when one cannot be)."""
    models = section.string_list("models", ("*",))
    if any(not pattern.strip() for pattern in models):
        section.error("models", "a model pattern cannot be empty")
        return models, None
    valid = True
    for pattern in models:
        try:
            ModelPatterns((pattern,))
        except ValueError as e:
            section.error("models", f'"{pattern}": {e}')
            valid = False
    return models, ModelPatterns(models) if valid else None


def _aliases(section: MapReader, patterns: ModelPatterns | None) -> dict[str, str]:
    """The ``aliases``, each a model name for a model the role's ``patterns`` allow (not
    checked against them when they are wrong: that error is reported already)."""
    aliases = section.string_map("aliases")
    seen: dict[str, str] = {}
    for alias, target in aliases.items():
        if not alias.strip() or not target.strip():
            section.error("aliases", "an alias and the model it names cannot be empty")
            continue
        try:
            key = normalize_model_name(alias)
        except ValueError as e:
            section.error("aliases", f'the alias "{alias}" is not a model name: {e}')
            continue
        if key in seen:
            section.error("aliases", f'"{alias}" is the alias "{seen[key]}" again')
        seen.setdefault(key, alias)
        try:
            name = normalize_model_name(target)
        except ValueError as e:
            section.error("aliases", f'"{alias}" names "{target}", not a model name: {e}')
            continue
        if patterns is not None and not patterns.allows(name):
            section.error("aliases", f'"{alias}" names "{target}", which the role\'s models '
                                     "do not allow")
    return aliases


def _read_role(name: str, section: MapReader) -> RoleSettings:
    api = section.string_list("api", DEFAULT_API_GROUPS)
    for group in api:
        if group not in API_GROUPS:
            section.error("api", f'unknown API group "{group}" (known: {", ".join(API_GROUPS)})')
    models, patterns = _models(section)
    role = RoleSettings(
        name=name,
        models=models,
        api=tuple(dict.fromkeys(api)),
        requests_per_minute=_optional_integer(section, "requestsPerMinute", 1),
        burst=_optional_integer(section, "burst", 1),
        concurrency=_optional_integer(section, "concurrency", 1),
        concurrency_wait=section.duration("concurrencyWait", 0.0),
        max_tokens=_optional_integer(section, "maxTokens", 1),
        tokens_per_day=_optional_integer(section, "tokensPerDay", 1),
        aliases=_aliases(section, patterns),
        keep_alive=_keep_alive(section),
        yaml_path=section.path,
        origins={"": section.origin,
                 **{key: section.origin_of(key) for key in section.keys()}},
    )
    if role.burst is not None and role.requests_per_minute is None:
        section.error("burst", "a burst needs requestsPerMinute")
    if role.concurrency_wait > MAX_CONCURRENCY_WAIT:
        section.error("concurrencyWait", f"at most {MAX_CONCURRENCY_WAIT:g}s: a request "
                                         "waiting longer should be queued by the client")
    if role.concurrency_wait and role.concurrency is None:
        section.error("concurrencyWait", "a wait for a slot needs concurrency")
    section.finish()
    return role


def read_roles(root: MapReader) -> dict[str, RoleSettings]:
    """Read ``roles``: a mapping of role name (as tokens carry it) to its rules."""
    roles_section = root.section("roles")
    roles: dict[str, RoleSettings] = {}
    for name in roles_section.keys():
        if not isinstance(name, str) or not name.strip():
            roles_section.error(str(name), "a role needs a name")
            continue
        value = roles_section.raw(name)
        if value is None:
            # `user:` alone: a role with the defaults.
            value = {}
        if not isinstance(value, Mapping):
            roles_section.error(name, f"expected a mapping of the role's rules, got "
                                      f"{describe(value)}")
            continue
        roles[name] = _read_role(name, roles_section.section(name))
    if root.has("roles") and not roles and root.raw("roles") is not None:
        root.error("roles", "name at least one role (or remove the section)")
    return roles
