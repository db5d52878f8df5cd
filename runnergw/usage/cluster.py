"""The day's token totals of a whole cluster, as the nodes count them in Redis."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred

from runnergw.config.settings import Settings
from runnergw.limits.redis_parts import redis_connection
from runnergw.limits.redis_state import RedisLimitState

__all__ = ["cluster_totals", "format_cluster"]


def cluster_totals(settings: Settings, day: str, reactor: Any) -> Deferred[dict[str, int]]:
    """Subject → tokens counted on ``day`` by every node sharing the settings' Redis
    (leases of streams under way included)."""
    connection = redis_connection(settings.redis, reactor, max(1.0, settings.limits.redis_timeout))
    state = RedisLimitState(connection, reactor, settings.redis.key_prefix,
                            settings.limits.slot_expiry)
    read = state.day_totals(day)
    return read.addBoth(lambda result: (connection.close(), result)[1])


def format_cluster(totals: Mapping[str, int], day: str, form: str) -> str:
    """``table`` (aligned, largest first), ``json`` or ``csv``."""
    rows = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    if form == "json":
        return json.dumps([{"day": day, "subject": subject, "total_tokens": tokens}
                           for subject, tokens in rows], indent=2) + "\n"
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("day", "subject", "total_tokens"))
        writer.writerows((day, subject, tokens) for subject, tokens in rows)
        return out.getvalue()
    lines = [("SUBJECT", f"TOKENS ({day})"), *((s, str(t)) for s, t in rows)]
    width = max(len(subject) for subject, _ in lines)
    right = max(len(tokens) for _, tokens in lines)
    return "".join(f"{s.ljust(width)}  {t.rjust(right)}\n" for s, t in lines)
