"""Settings a reload cannot change: the new settings keep their running values, and each
change is named so that the operator knows a restart is needed."""

from __future__ import annotations

import attrs

from runnergw.config.settings import Settings

__all__ = ["RestartOnly", "keep_running_values"]


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
    while a ``roles`` section made them (``limits_kept``).
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
    metrics = new.metrics
    if metrics.address != running.metrics.address:
        changes.append(RestartOnly("metrics.address", _address(running.metrics.address),
                                   _address(metrics.address)))
        metrics = attrs.evolve(metrics, address=running.metrics.address)
    kept = attrs.evolve(new, server=server, pipelines=pipelines, policy=policy,
                        metrics=metrics)
    return kept, changes


def _address(address: object) -> str:
    return "off" if address is None else str(address)


def _present(enabled: bool) -> str:
    return "present" if enabled else "absent"
