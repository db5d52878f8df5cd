"""A real ``twistd runnergw`` with ``server.workers`` under a stand-in service manager: its
JSON log events (the workers' carry their ``worker``), its notify messages, its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import TestCase

from tests.helpers.notify_socket import ServiceManager, listen_as_service_manager
from tests.helpers.twistd import TwistdProcess, gateway_environment, spawn_twistd

__all__ = ["LoggedTwistd", "ServiceManager", "start_twistd"]

Event = dict[str, Any]


class LoggedTwistd(TwistdProcess):
    """A gateway of several workers: ``next_event(name, worker=i)`` waits for one
    worker's event."""


def start_twistd(testcase: TestCase, directory: Path, document: dict[str, Any]
                 ) -> tuple[LoggedTwistd, ServiceManager]:
    """Write ``document`` as the settings and start twistd on them, ``$NOTIFY_SOCKET``
    naming a service manager's socket; sent SIGTERM (then waited for) at cleanup."""
    config = directory / "settings.yaml"
    config.write_text(yaml.safe_dump(document))
    socket_path, manager = listen_as_service_manager(testcase)
    process = LoggedTwistd()
    process.listening.addErrback(lambda _: None)
    spawn_twistd(testcase, process, config, directory=directory,
                 environment=gateway_environment(NOTIFY_SOCKET=socket_path))
    return process, manager
