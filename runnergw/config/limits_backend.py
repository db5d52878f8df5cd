"""The ``limits`` section: where limit state lives (this process or Redis) and what each
limit does while Redis cannot be reached."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from runnergw.config.errors import Origin
from runnergw.config.reader import MapReader
from runnergw.config.roles import RoleSettings

__all__ = ["LIMIT_NAMES", "LimitsSettings", "share_problems"]

LIMIT_NAMES = ("rateLimit", "concurrency", "quota")
"""The limits, by the names ``onRedisError`` and the degraded metric use."""

_CHOICES = ("closed", "open")


@attrs.frozen
class LimitsSettings:
    """``backend: local`` keeps buckets, slots and daily totals in this process (one node);
    ``backend: redis`` shares them through the ``redis`` section (several nodes)."""

    backend: str = "local"
    on_redis_error: tuple[tuple[str, str], ...] = (
        ("rateLimit", "open"), ("concurrency", "open"), ("quota", "closed"))
    """Limit name → ``closed`` (refuse with 503 and ``Retry-After``) or ``open`` (count in
    this process, each limit divided by ``nodes``) while Redis does not answer."""
    nodes: int = 0
    """How many nodes share the limits: a fail-open node allows 1/nodes of each limit."""
    slot_expiry: float = 30.0
    """A concurrency slot not refreshed for this long is free (its node died)."""
    redis_timeout: float = 0.25
    """The deadline of each Redis call; past it the call counts as an error."""

    @property
    def fails_open(self) -> tuple[str, ...]:
        """The limits counted in this process, divided by ``nodes``, while Redis is away."""
        return tuple(name for name, choice in self.on_redis_error if choice == "open")

    def choice(self, limit: str) -> str:
        """``closed`` or ``open``: what ``limit`` does while Redis does not answer."""
        return dict(self.on_redis_error)[limit]

    @property
    def shared(self) -> bool:
        """True when the state lives in Redis."""
        return self.backend == "redis"

    @classmethod
    def from_yaml(cls, section: MapReader) -> LimitsSettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        errors = section.section("onRedisError")
        choices = tuple((name, errors.choice(name, defaults.choice(name), _CHOICES))
                        for name in LIMIT_NAMES)
        errors.finish()
        settings = cls(
            backend=section.choice("backend", defaults.backend, ("local", "redis")),
            on_redis_error=choices,
            nodes=section.integer("nodes", 0, minimum=1),
            slot_expiry=section.duration("slotExpiry", defaults.slot_expiry),
            redis_timeout=section.duration("redisTimeout", defaults.redis_timeout),
        )
        if settings.shared:
            opened = settings.fails_open
            if opened and not settings.nodes:
                section.error("nodes", f"needed: {', '.join(opened)} fail open to this node's "
                                       "share (the limit divided by the node count)")
            if settings.slot_expiry < 1:
                section.error("slotExpiry", "must be at least 1s (slots are refreshed "
                                            "three times per expiry)")
            if settings.redis_timeout <= 0:
                section.error("redisTimeout", "must be more than 0")
        section.finish()
        return settings


_ROLE_KEYS = (("rateLimit", ("requestsPerMinute", "burst")), ("concurrency", ("concurrency",)),
              ("quota", ("tokensPerDay",)))
"""Each limit and the role settings a failing-open node divides by ``nodes``."""

_ROLE_VALUES = {"requestsPerMinute": lambda role: role.requests_per_minute,
                "burst": lambda role: role.burst, "concurrency": lambda role: role.concurrency,
                "tokensPerDay": lambda role: role.tokens_per_day}


def share_problems(limits: LimitsSettings, roles: Iterable[RoleSettings]
                   ) -> list[tuple[Origin, str, str]]:
    """The ``(origin, path, message)`` of each role limit that fails open and is smaller
    than ``limits.nodes``: every node would allow at least 1 while Redis is away, more than
    the limit across the nodes."""
    if not limits.shared or not limits.nodes:
        return []
    problems = []
    for role in roles:
        for limit, keys in _ROLE_KEYS:
            if limits.choice(limit) != "open":
                continue
            for key in keys:
                value = _ROLE_VALUES[key](role)
                if value is None or value >= limits.nodes:
                    continue
                problems.append((role.origin_of(key), f"{role.yaml_path}.{key}",
                                 f"{value} is less than limits.nodes ({limits.nodes}): failing "
                                 f"open (limits.onRedisError.{limit}: open) each node would "
                                 f"allow at least 1, {limits.nodes} across the nodes; set "
                                 f"limits.onRedisError.{limit}: closed or {key} to at least "
                                 f"{limits.nodes}"))
    return problems
