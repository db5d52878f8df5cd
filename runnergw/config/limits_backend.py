"""The ``limits`` section: where limit state lives (this process or Redis) and what each
limit does while Redis cannot be reached."""

from __future__ import annotations

import attrs

from runnergw.config.reader import MapReader

__all__ = ["LIMIT_NAMES", "LimitsSettings"]

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
            opened = [name for name, choice in choices if choice == "open"]
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
