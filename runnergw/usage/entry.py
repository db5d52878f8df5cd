"""What the usage ledger counts: one request's usage, and the sums kept per day, subject, role
and model."""

from __future__ import annotations

import re

import attrs

__all__ = ["UsageEntry", "UsageKey", "UsageSums", "is_day"]

UsageKey = tuple[str, str, str, str]
"""(day, subject, role, model): what the ledger sums by."""

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def is_day(text: str) -> bool:
    """Whether ``text`` is an ISO date, as days are written in the ledger."""
    return _DAY.match(text) is not None


@attrs.frozen
class UsageEntry:
    """What one request used, or the sum of several with the same day, subject, role and
    model.

    Made once per request: checked in one step (a bad day or a negative count is the
    caller's bug, refused with ValueError where it is made), not field by field.
    """

    day: str
    """The ISO date (``2026-12-05``) in the configured time zone, as the caller counts days."""
    subject: str
    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    requests: int = 1
    truncated: int = 0
    """1 when the gateway cut the answer at a quota."""

    def __attrs_post_init__(self) -> None:
        counts = (self.prompt_tokens, self.completion_tokens, self.requests, self.truncated)
        if not is_day(self.day):
            raise ValueError(f"day must be an ISO date, got {self.day!r}")
        for count in counts:
            if type(count) is not int or count < 0:
                raise ValueError(f"counts must be whole numbers of at least 0, got {counts}")


@attrs.define
class UsageSums:
    """The counts of one (day, subject, role, model), as they grow in memory."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: int = 0

    def add(self, other: UsageEntry | UsageSums) -> None:
        """Add the counts of ``other``."""
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.truncated += other.truncated
