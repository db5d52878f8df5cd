"""What a worker is told: its index, its supervisor's private directory and the descriptor
of the listening socket, passed as arguments."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.workers.role import LISTEN_FD, WorkerRole

__all__ = ["WorkerRoleTests"]


class WorkerRoleTests(SynchronousTestCase):
    """``WorkerRole``."""

    def test_arguments_read_back(self) -> None:
        """The arguments the supervisor gives are read back as the same role and file."""
        role = WorkerRole(5, "/run/x", 7)
        self.assertEqual(WorkerRole.parse(role.arguments("settings/a.yaml")),
                         ("settings/a.yaml", role))

    def test_default_descriptor(self) -> None:
        """Without ``--listen-fd`` the socket is descriptor 3, as the supervisor passes it."""
        _, role = WorkerRole.parse(["--config", "a.yaml", "--index", "0", "--run-dir", "/r"])
        self.assertEqual(role.listen_fd, LISTEN_FD)

    def test_sockets_in_private_directory(self) -> None:
        """Each worker's notify and metrics sockets are its own, in the supervisor's
        directory."""
        role = WorkerRole(2, "/run/x")
        self.assertEqual((role.notify_path, role.metrics_path, role.name),
                         ("/run/x/notify-2", "/run/x/metrics-2", "worker-2"))
