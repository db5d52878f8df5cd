"""What a worker process is told by its supervisor: its index, the listening socket it
inherits, and the private directory where it reports (notify socket) and serves its
metrics (unix socket)."""

from __future__ import annotations

import argparse
import os

import attrs

__all__ = ["LISTEN_FD", "WorkerRole"]

LISTEN_FD = 3
"""The descriptor a worker inherits the listening socket as."""


@attrs.frozen
class WorkerRole:
    """One worker among several: ``index`` from 0."""

    index: int
    run_dir: str
    """The supervisor's private directory (mode 0700)."""
    listen_fd: int = LISTEN_FD

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    @property
    def notify_path(self) -> str:
        """The datagram socket the worker's notify messages go to (its ``$NOTIFY_SOCKET``)."""
        return os.path.join(self.run_dir, f"notify-{self.index}")

    @property
    def metrics_path(self) -> str:
        """The unix socket the worker serves ``/metrics``, ``/healthz`` and ``/readyz`` on."""
        return os.path.join(self.run_dir, f"metrics-{self.index}")

    def arguments(self, config_path: str) -> list[str]:
        """The worker entry point's arguments (after ``python -m runnergw.worker``)."""
        return ["--config", config_path, "--index", str(self.index), "--run-dir",
                self.run_dir, "--listen-fd", str(self.listen_fd)]

    @classmethod
    def parse(cls, argv: list[str]) -> tuple[str, WorkerRole]:
        """The settings file and the role from the entry point's arguments."""
        parser = argparse.ArgumentParser(prog="python -m runnergw.worker",
                                         description="One gateway worker (started by the "
                                                     "supervisor of server.workers).")
        parser.add_argument("--config", required=True)
        parser.add_argument("--index", type=int, required=True)
        parser.add_argument("--run-dir", required=True)
        parser.add_argument("--listen-fd", type=int, default=LISTEN_FD)
        args = parser.parse_args(argv)
        return args.config, cls(args.index, args.run_dir, args.listen_fd)
