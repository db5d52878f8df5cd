"""The systemd unit shipped in ``contrib/systemd/``: what it asks of systemd, and that
``systemd-analyze verify`` finds nothing wrong with it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.exit_status import FAILED_AT_START

__all__ = ["ContribDirectoryTests", "ServiceUnitTests", "SocketUnitTests", "VerifyTests"]

_ROOT = Path(__file__).resolve().parents[2]
_UNIT = _ROOT / "contrib" / "systemd" / "runnergw.service"
_SOCKET = _UNIT.with_name("runnergw.socket")


def _settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) to every value given, in order (a key may repeat in a unit file)."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


class ServiceUnitTests(SynchronousTestCase):
    """What the shipped unit asks of systemd."""

    def setUp(self) -> None:
        self.settings = _settings(_UNIT.read_text())

    def value(self, key: str, section: str = "Service") -> str:
        [value] = self.settings[(section, key)]
        return value

    def test_notify_from_the_main_process(self) -> None:
        """systemd waits for the gateway's own READY=1, and hears only the main process."""
        self.assertEqual(self.value("Type"), "notify")
        self.assertEqual(self.value("NotifyAccess"), "main")

    def test_twistd_stays_in_the_foreground(self) -> None:
        """twistd runs with ``-n`` and no pid file: the main process is the gateway itself."""
        argv = shlex.split(self.value("ExecStart"))
        self.assertTrue(argv[0].endswith("/twistd"), argv)
        self.assertIn("-n", argv)
        self.assertIn("--pidfile=", argv)
        self.assertIn("runnergw", argv[argv.index("-n"):])

    def test_reload_is_sighup(self) -> None:
        """``systemctl reload`` sends SIGHUP to the gateway."""
        self.assertEqual(shlex.split(self.value("ExecReload"))[1:], ["-HUP", "$MAINPID"])

    def test_no_restart_loop_on_a_configuration_failure(self) -> None:
        """A gateway that stopped because the usage ledger could not start (status 78) is
        not restarted every two seconds for ever: it would fail again."""
        self.assertEqual(self.value("Restart"), "on-failure")
        self.assertEqual(self.value("RestartPreventExitStatus"), str(FAILED_AT_START))

    def test_own_user(self) -> None:
        """The gateway (and its jobs) run as ``runnergw``, not root."""
        self.assertEqual(self.value("User"), "runnergw")

    def test_hardening(self) -> None:
        """No new privileges, a read-only system, no home directories, a private /tmp, and at
        most the capability to bind low ports."""
        for key, expected in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                              ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
            self.assertEqual(self.value(key), expected, key)
        self.assertIn(self.value("CapabilityBoundingSet"), ("", "CAP_NET_BIND_SERVICE"))

    def test_writable_state_and_logs(self) -> None:
        """The audit log, usage ledger and jobs directory have somewhere to be written."""
        writable = self.value("ReadWritePaths").split()
        self.assertIn("/var/lib/runnergw", writable)
        self.assertIn("/var/log/runnergw", writable)
        self.assertEqual(self.value("StateDirectory"), "runnergw")
        self.assertEqual(self.value("LogsDirectory"), "runnergw")


class SocketUnitTests(SynchronousTestCase):
    """What the shipped socket unit asks of systemd."""

    def setUp(self) -> None:
        self.settings = _settings(_SOCKET.read_text())

    def value(self, key: str, section: str = "Socket") -> str:
        [value] = self.settings[(section, key)]
        return value

    def test_listens_on_443_for_the_service(self) -> None:
        """systemd listens on the HTTPS port and hands the socket to the gateway's service."""
        self.assertEqual(self.value("ListenStream"), "443")
        self.assertEqual(self.value("Service"), "runnergw.service")

    def test_one_gateway_for_every_connection(self) -> None:
        """The listening socket is passed (``Accept=no``), not one gateway per connection."""
        self.assertEqual(self.value("Accept"), "no")

    def test_named_as_the_gateway_looks_for_it(self) -> None:
        """The socket is passed under the name the gateway takes first."""
        self.assertEqual(self.value("FileDescriptorName"), "runnergw")


class VerifyTests(SynchronousTestCase):
    """``systemd-analyze verify`` on the shipped unit."""

    def setUp(self) -> None:
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            raise self.skipTest("systemd-analyze is not installed (Debian package systemd)")

    def verify(self, text: str, socket: str | None = None) -> tuple[int, list[str]]:
        """Verify the unit ``text`` as ``runnergw.service`` in a directory of its own, with the
        socket unit ``socket`` next to it when given (then both are verified); the exit
        status, and the lines of output that are about them (not about the host's own units)."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        units = [directory / "runnergw.service"]
        units[0].write_text(text)
        if socket is not None:
            units.append(directory / "runnergw.socket")
            units[1].write_text(socket)
        done = subprocess.run([str(self.analyze), "verify", "--man=no", *map(str, units)],
                              capture_output=True, text=True, timeout=60, check=False)
        lines = (done.stdout + done.stderr).splitlines()
        return done.returncode, [line for line in lines if "runnergw" in line]

    def shipped(self) -> str:
        """The shipped unit, with ExecStart's program replaced by this Python: verify refuses
        a program that does not exist, and this machine has no /opt/runnergw installation
        (the program's arguments are not checked)."""
        text = _UNIT.read_text()
        [program] = [shlex.split(line.partition("=")[2])[0] for line in text.splitlines()
                     if line.startswith("ExecStart=")]
        self.assertFalse(Path(program).exists(), program)
        return text.replace(f"ExecStart={program} ", f"ExecStart={sys.executable} ")

    def test_shipped_unit_is_clean(self) -> None:
        """The unit as shipped (but for the program's path) has no error nor warning."""
        self.assertEqual(self.verify(self.shipped()), (0, []))

    def test_shipped_socket_unit_is_clean(self) -> None:
        """The socket unit with the service it activates has no error nor warning."""
        self.assertEqual(self.verify(self.shipped(), _SOCKET.read_text()), (0, []))

    def test_a_mistake_in_the_socket_unit_is_reported(self) -> None:
        """A misspelt setting in the socket unit is seen (the check above is not vacuous)."""
        socket = _SOCKET.read_text().replace("ListenStream=", "ListenStrem=")
        status, lines = self.verify(self.shipped(), socket)
        self.assertTrue(any("ListenStrem" in line for line in lines), (status, lines))

    def test_a_mistake_is_reported(self) -> None:
        """A misspelt setting in the unit is seen (the check above is not vacuous)."""
        status, lines = self.verify(self.shipped().replace("ProtectHome=", "ProtectHom="))
        self.assertTrue(any("ProtectHom" in line for line in lines), (status, lines))


class ContribDirectoryTests(SynchronousTestCase):
    """What ships next to the unit, and where it is described."""

    def test_service_and_socket_units(self) -> None:
        """The service unit ships with its socket unit, and nothing else."""
        self.assertEqual(sorted(p.name for p in _UNIT.parent.iterdir()),
                         ["runnergw.service", "runnergw.socket"])

    def test_readme_points_to_the_socket_unit(self) -> None:
        """The README names the shipped socket unit."""
        self.assertIn("contrib/systemd/runnergw.socket", (_ROOT / "README.md").read_text())

    def test_readme_points_to_the_shipped_unit(self) -> None:
        """The README names the shipped unit instead of keeping a copy that would drift."""
        readme = (_ROOT / "README.md").read_text()
        self.assertIn("contrib/systemd/runnergw.service", readme)
        self.assertNotIn("\n[Service]\n", readme)

    def test_ci_installs_systemd_analyze(self) -> None:
        """The CI script installs the ``systemd`` package, so the verify test runs there."""
        script = (_ROOT / ".ci" / "run").read_text()
        [install] = [line for line in script.splitlines() if "apt-get install" in line]
        self.assertIn(" systemd", install)
        self.assertIn("command -v systemd-analyze", script)
