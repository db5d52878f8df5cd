"""Socket activation: which descriptors the ``LISTEN_*`` variables pass, which one the gateway
takes, and what it leaves to the programs it starts."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.systemd.activation import (
    ActivationError,
    PassedSocket,
    choose_listener,
    forget_environment,
    make_non_blocking,
    passed_sockets,
    start_environment,
)

__all__ = ["ChooseListenerTests", "ForgetEnvironmentTests", "NonBlockingTests",
           "PassedSocketsTests", "StartEnvironmentTests"]

_PID = 4242


class StartEnvironmentTests(SynchronousTestCase):
    """Where the variables are read: importing ``twisted.internet.endpoints`` removes
    ``LISTEN_PID`` and ``LISTEN_FDS`` from ``os.environ``."""

    def started(self, block: bytes) -> str:
        path = Path(self.mktemp())
        path.write_bytes(block)
        return str(path)

    def test_from_the_start_environment(self) -> None:
        """Variables gone from the current environment are read from the one the process
        started with, and only the ``LISTEN_*`` ones."""
        path = self.started(b"PATH=/bin\0LISTEN_PID=7\0LISTEN_FDS=1\0"
                            b"LISTEN_FDNAMES=runnergw\0")
        self.assertEqual(start_environment({"LISTEN_FDNAMES": "runnergw"}, path),
                         {"LISTEN_PID": "7", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "runnergw"})

    def test_current_environment_first(self) -> None:
        """Variables still in the current environment are taken from it."""
        path = self.started(b"LISTEN_PID=7\0LISTEN_FDS=1\0")
        self.assertEqual(start_environment({"LISTEN_PID": "8", "LISTEN_FDS": "2"}, path),
                         {"LISTEN_PID": "8", "LISTEN_FDS": "2"})

    def test_unreadable_start_environment(self) -> None:
        """Without a readable start environment, the current one is used."""
        self.assertEqual(start_environment({"LISTEN_FDS": "1"}, self.mktemp()),
                         {"LISTEN_FDS": "1"})


class PassedSocketsTests(SynchronousTestCase):
    """Reading ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``."""

    def test_descriptors_from_three(self) -> None:
        """``LISTEN_FDS=2`` for this process passes descriptors 3 and 4."""
        self.assertEqual(passed_sockets({"LISTEN_PID": str(_PID), "LISTEN_FDS": "2"}, _PID),
                         [PassedSocket(3), PassedSocket(4)])

    def test_names(self) -> None:
        """``LISTEN_FDNAMES`` names each descriptor in order."""
        environ = {"LISTEN_PID": str(_PID), "LISTEN_FDS": "2",
                   "LISTEN_FDNAMES": "metrics:runnergw"}
        self.assertEqual(passed_sockets(environ, _PID),
                         [PassedSocket(3, "metrics"), PassedSocket(4, "runnergw")])

    def test_another_process(self) -> None:
        """Variables meant for another pid (inherited from a parent) pass nothing."""
        environ = {"LISTEN_PID": str(_PID + 1), "LISTEN_FDS": "1"}
        self.assertEqual(passed_sockets(environ, _PID), [])

    def test_no_variables(self) -> None:
        """Without the variables (not socket-activated) nothing is passed."""
        self.assertEqual(passed_sockets({}, _PID), [])

    def test_no_pid(self) -> None:
        """``LISTEN_FDS`` without ``LISTEN_PID`` passes nothing: it may not be for us."""
        self.assertEqual(passed_sockets({"LISTEN_FDS": "1"}, _PID), [])

    def test_pid_not_a_number(self) -> None:
        """A ``LISTEN_PID`` that is not a number cannot be ours: nothing is passed."""
        self.assertEqual(passed_sockets({"LISTEN_PID": "self", "LISTEN_FDS": "1"}, _PID), [])

    def test_zero(self) -> None:
        """``LISTEN_FDS=0`` passes nothing, with or without an empty name list."""
        environ = {"LISTEN_PID": str(_PID), "LISTEN_FDS": "0"}
        self.assertEqual(passed_sockets(environ, _PID), [])
        self.assertEqual(passed_sockets({**environ, "LISTEN_FDNAMES": ""}, _PID), [])

    def test_count_not_a_number(self) -> None:
        """A ``LISTEN_FDS`` meant for us that is not a count is an error naming it."""
        environ = {"LISTEN_PID": str(_PID), "LISTEN_FDS": "-1"}
        error = self.assertRaises(ActivationError, passed_sockets, environ, _PID)
        self.assertIn("LISTEN_FDS='-1'", str(error))

    def test_names_do_not_match_the_count(self) -> None:
        """A name list that does not name each descriptor is an error naming both."""
        environ = {"LISTEN_PID": str(_PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "runnergw"}
        error = self.assertRaises(ActivationError, passed_sockets, environ, _PID)
        self.assertIn("LISTEN_FDNAMES='runnergw'", str(error))
        self.assertIn("LISTEN_FDS=2", str(error))


class ChooseListenerTests(SynchronousTestCase):
    """The socket the gateway serves on, among real sockets."""

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
               listen: bool = True) -> socket.socket:
        sock = socket.socket(family, kind)
        self.addCleanup(sock.close)
        # Bound to loopback; a unix socket to a free abstract name.
        sock.bind({socket.AF_INET: ("127.0.0.1", 0), socket.AF_INET6: ("::1", 0),
                   socket.AF_UNIX: ""}[family])
        if listen:
            sock.listen()
        return sock

    def test_nothing_passed(self) -> None:
        """Nothing passed: nothing chosen (the gateway binds ``server.address``)."""
        self.assertIsNone(choose_listener([]))

    def test_named_one(self) -> None:
        """The socket named ``runnergw`` is taken even when another comes first."""
        first, named = self.socket(), self.socket()
        sockets = [PassedSocket(first.fileno(), "metrics"),
                   PassedSocket(named.fileno(), "runnergw")]
        self.assertEqual(choose_listener(sockets), sockets[1])

    def test_first_listening_stream_socket(self) -> None:
        """Without that name, the first listening stream socket is taken: not a datagram
        socket, not a connection."""
        datagram = self.socket(kind=socket.SOCK_DGRAM, listen=False)
        connection = self.socket(listen=False)
        listener = self.socket(family=socket.AF_INET6)
        sockets = [PassedSocket(datagram.fileno()), PassedSocket(connection.fileno()),
                   PassedSocket(listener.fileno(), "unknown")]
        self.assertEqual(choose_listener(sockets), sockets[2])

    def test_unix_socket_refused(self) -> None:
        """A unix stream socket is refused with an error naming its family."""
        unix = self.socket(family=socket.AF_UNIX)
        error = self.assertRaises(ActivationError, choose_listener,
                                  [PassedSocket(unix.fileno(), "runnergw")])
        self.assertIn("AF_UNIX", str(error))
        self.assertIn(f"fd {unix.fileno()} (runnergw)", str(error))

    def test_named_connection_refused(self) -> None:
        """The named socket is a connection (``Accept=yes``): an error, not another socket."""
        connection, listener = self.socket(listen=False), self.socket()
        sockets = [PassedSocket(connection.fileno(), "runnergw"), PassedSocket(listener.fileno())]
        error = self.assertRaises(ActivationError, choose_listener, sockets)
        self.assertIn("Accept=no", str(error))

    def test_no_listener(self) -> None:
        """No listening stream socket among those passed: an error listing them."""
        datagram = self.socket(kind=socket.SOCK_DGRAM, listen=False)
        error = self.assertRaises(ActivationError, choose_listener,
                                  [PassedSocket(datagram.fileno())])
        self.assertIn(f"fd {datagram.fileno()}", str(error))

    def test_not_a_socket(self) -> None:
        """A passed descriptor that is no socket is an error, not a crash."""
        with open(__file__, "rb") as f:
            error = self.assertRaises(ActivationError, choose_listener,
                                      [PassedSocket(f.fileno())])
        self.assertIn("not an open socket", str(error))

    def test_socket_stays_open(self) -> None:
        """Looking at a passed socket leaves it open for the port that adopts it."""
        listener = self.socket()
        choose_listener([PassedSocket(listener.fileno())])
        self.assertEqual(listener.getsockname()[0], "127.0.0.1")


class ForgetEnvironmentTests(SynchronousTestCase):
    """What programs the gateway starts inherit."""

    def test_variables_removed(self) -> None:
        """The ``LISTEN_*`` variables are removed; others stay."""
        environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "runnergw",
                   "PATH": "/bin"}
        forget_environment(environ, [])
        self.assertEqual(environ, {"PATH": "/bin"})

    def test_other_descriptors_close_on_exec(self) -> None:
        """Passed descriptors not taken are closed in started programs; the one taken is left
        as it is (its port listens on a copy)."""
        taken, other = socket.socket(), socket.socket()
        self.addCleanup(taken.close)
        self.addCleanup(other.close)
        for sock in (taken, other):
            sock.set_inheritable(True)
        forget_environment({}, [PassedSocket(taken.fileno()), PassedSocket(other.fileno())],
                           keep=PassedSocket(taken.fileno()))
        self.assertTrue(fcntl.fcntl(other.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        self.assertFalse(fcntl.fcntl(taken.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


class NonBlockingTests(SynchronousTestCase):
    """The socket is made fit for the reactor."""

    def test_non_blocking(self) -> None:
        """A blocking socket (as systemd passes it) becomes non-blocking: the reactor's accept
        would otherwise block the whole gateway."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        self.assertFalse(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
        make_non_blocking(sock.fileno())
        self.assertTrue(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
