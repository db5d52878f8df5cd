"""Settings a reload cannot change: the new settings keep their running values, and each
change is named so that the operator knows a restart is needed."""

from __future__ import annotations

import attrs

from runnergw.config.settings import Settings

__all__ = ["RestartOnly", "keep_running_values"]

_LIMITS_KEYS = {"backend": "backend", "on_redis_error": "onRedisError", "nodes": "nodes",
                "slot_expiry": "slotExpiry", "redis_timeout": "redisTimeout"}
_REDIS_KEYS = {"address": "address", "unix_socket": "unixSocket",
               "password_file": "passwordFile", "password_env": "passwordEnv",
               "tls_ca_path": "tls.caPath", "database": "database", "key_prefix": "keyPrefix"}
"""Attribute → YAML key of the settings kept with the limit state."""


@attrs.frozen
class RestartOnly:
    """A setting a reload asked to change, which keeps its running value until a restart."""

    path: str
    """Its YAML path (``server.address``)."""
    running: str
    wanted: str


def keep_running_values(running: Settings, new: Settings, *, socket_passed: bool = False,
                        limits_kept: bool = False) -> tuple[Settings, list[RestartOnly]]:
    """``new`` with the running value of every setting a reload cannot apply, and those
    that differ.

    The listener keeps its address (``server.address``; not named when the socket came
    from the service manager, which chooses it), its number of processes
    (``server.workers``) and whether it speaks TLS, and so does the
    metrics listener (``metrics.address``); the pipelines
    keep their jobs directory (locked by this gateway) and the launcher's niceness, and
    the section cannot appear or go; the usage ledger and the quota day's time zone stay
    while a ``roles`` section made them (``limits_kept``), and so do the ``limits`` and
    ``redis`` sections (the limit state and its connection are kept).
    """
    changes: list[RestartOnly] = []
    server = new.server
    if server.address != running.server.address:
        if not socket_passed:
            changes.append(RestartOnly("server.address", str(running.server.address),
                                       str(server.address)))
        server = attrs.evolve(server, address=running.server.address)
    if server.workers != running.server.workers:
        changes.append(RestartOnly("server.workers", str(running.server.workers),
                                   str(server.workers)))
        server = attrs.evolve(server, workers=running.server.workers)
    if server.tls_enabled != running.server.tls_enabled:
        changes.append(RestartOnly("server.certificatePath",
                                   running.server.certificate_path or '""',
                                   server.certificate_path or '""'))
        server = attrs.evolve(server, certificate_path=running.server.certificate_path,
                              key_path=running.server.key_path)
    pipelines = new.pipelines
    if pipelines.enabled != running.pipelines.enabled:
        changes.append(RestartOnly("pipelines", _present(running.pipelines.enabled),
                                   _present(pipelines.enabled)))
        pipelines = running.pipelines
    elif pipelines.enabled:
        for key, attribute in (("jobsPath", "jobs_path"), ("jobNiceness", "job_niceness")):
            was, wanted = getattr(running.pipelines, attribute), getattr(pipelines, attribute)
            if was != wanted:
                changes.append(RestartOnly(f"pipelines.{key}", str(was), str(wanted)))
                pipelines = attrs.evolve(pipelines, **{attribute: was})
    policy = new.policy
    if limits_kept:
        for key, attribute in (("ledgerPath", "ledger_path"), ("timeZone", "time_zone")):
            was, wanted = getattr(running.policy, attribute), getattr(policy, attribute)
            if was != wanted:
                changes.append(RestartOnly(f"policy.{key}", str(was), str(wanted)))
                policy = attrs.evolve(policy, **{attribute: was})
    limits, redis = new.limits, new.redis
    if limits_kept:
        # The limit state (and its connection) is kept across reloads.
        for section, names, was, wanted in (("limits", _LIMITS_KEYS, running.limits, limits),
                                            ("redis", _REDIS_KEYS, running.redis, redis)):
            for attribute, key in names.items():
                before, after = getattr(was, attribute), getattr(wanted, attribute)
                if before != after:
                    changes.append(RestartOnly(f"{section}.{key}", str(before), str(after)))
        limits, redis = running.limits, running.redis
    metrics = new.metrics
    if metrics.address != running.metrics.address:
        changes.append(RestartOnly("metrics.address", _address(running.metrics.address),
                                   _address(metrics.address)))
        metrics = attrs.evolve(metrics, address=running.metrics.address)
    kept = attrs.evolve(new, server=server, pipelines=pipelines, policy=policy,
                        metrics=metrics, limits=limits, redis=redis)
    return kept, changes


def _address(address: object) -> str:
    return "off" if address is None else str(address)


def _present(enabled: bool) -> str:
    return "present" if enabled else "absent"
