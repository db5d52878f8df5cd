"""``twistd runnergw``: options and service construction."""

from __future__ import annotations

import gc
import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import config_path_from, load_settings

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """Command-line options of ``twistd runnergw``."""

    synopsis = "[--config settings/my-domain.yaml]"
    optParameters = [
        ["config", "c", None,
         "Settings file (default: $RUNNERGW_CONFIG, else settings/settings.yaml)."],
    ]

    def postOptions(self) -> None:
        """Load the settings now, so a bad file stops twistd before anything starts."""
        path = config_path_from(self["config"], os.environ)
        try:
            self.settings = load_settings(path)
        except ConfigErrors as e:
            raise usage.UsageError(str(e)) from e


def makeService(options: Options) -> IService:
    """Load keys and certificates and build the gateway service (errors exit non-zero)."""
    from twisted.internet import reactor

    from runnergw.exit_status import exit_with_status
    from runnergw.logs import level_gate
    from runnergw.service import GatewayService
    from runnergw.startup import ensure_development_keys, prepare

    settings = options.settings
    level_gate.set_level(settings.logging.level)
    ensure_development_keys(settings)
    try:
        parts = prepare(settings)
        if settings.server.workers > 1:
            from runnergw.workers.supervisor import WorkerSupervisor

            parts.audit_log.close()  # checked here; each worker opens its own
            service: Any = WorkerSupervisor(settings, reactor)
        else:
            service = GatewayService(settings, parts, reactor)
    except ConfigErrors as e:
        raise SystemExit(f"runnergw: {e}") from e
    exit_with_status(service.exit_status)
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise stall streams for tens of milliseconds.
    gc.collect()
    gc.freeze()
    return service
