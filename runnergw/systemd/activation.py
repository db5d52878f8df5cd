"""Socket activation: the listening socket systemd (or ``systemd-socket-activate``) passes.

The protocol (``sd_listen_fds(3)``): ``LISTEN_PID`` is the pid the sockets are meant for,
``LISTEN_FDS`` how many there are, starting at descriptor 3, and ``LISTEN_FDNAMES`` (optional)
their names separated by ``:`` (a ``.socket`` unit's ``FileDescriptorName=``).

Importing ``twisted.internet.endpoints`` removes ``LISTEN_PID`` and ``LISTEN_FDS`` from
``os.environ`` (its ``systemd:`` endpoint parser takes them at import), and twistd imports it
before the gateway starts: the variables are read from the environment the process started
with instead (:func:`start_environment`).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Mapping, MutableMapping

import attrs

__all__ = ["FIRST_FD", "ActivationError", "PassedSocket", "choose_listener", "forget_environment",
           "make_non_blocking", "passed_sockets", "probe", "start_environment"]

FIRST_FD = 3
"""The first descriptor passed (``SD_LISTEN_FDS_START``)."""

_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """The sockets passed cannot be used; the message says why, for the operator."""


@attrs.frozen
class PassedSocket:
    """A descriptor passed by the service manager and its name (``""`` when not named)."""

    fd: int
    name: str = ""

    def describe(self) -> str:
        return f"fd {self.fd}" + (f" ({self.name})" if self.name else "")


def start_environment(environ: Mapping[str, str],
                      path: str = "/proc/self/environ") -> dict[str, str]:
    """The ``LISTEN_*`` variables of the environment the process started with (``path``), or of
    ``environ`` when it still has ``LISTEN_PID`` or ``path`` cannot be read."""
    if "LISTEN_PID" not in environ:
        try:
            with open(path, "rb") as f:
                block = f.read()
        except OSError:
            pass
        else:
            started: dict[str, str] = {}
            for entry in block.split(b"\0"):
                name, sep, value = entry.partition(b"=")
                if sep and name.decode("ascii", "replace") in _VARIABLES:
                    started[name.decode()] = value.decode("utf-8", "replace")
            return started
    return {name: environ[name] for name in _VARIABLES if name in environ}


def passed_sockets(environ: Mapping[str, str], pid: int) -> list[PassedSocket]:
    """The descriptors passed to process ``pid`` according to ``environ``.

    Nothing when ``LISTEN_PID`` or ``LISTEN_FDS`` is absent, or ``LISTEN_PID`` is not ``pid``
    (the variables were meant for a parent and merely inherited), or not a number.

    Raises:
        ActivationError: the variables are meant for us but ``LISTEN_FDS`` is not a count, or
            ``LISTEN_FDNAMES`` does not name each descriptor.
    """
    listen_pid = environ.get("LISTEN_PID", "").strip()
    listen_fds = environ.get("LISTEN_FDS")
    if listen_fds is None or not listen_pid.isdigit() or int(listen_pid) != pid:
        return []
    text = listen_fds.strip()
    if not text.isdigit():
        raise ActivationError(f"LISTEN_FDS={listen_fds!r} is not a count of descriptors")
    count = int(text)
    names_text = environ.get("LISTEN_FDNAMES")
    if names_text is None:
        names = [""] * count
    else:
        names = names_text.split(":") if count else []
        if len(names) != count:
            raise ActivationError(f"LISTEN_FDNAMES={names_text!r} names {len(names)} "
                                  f"descriptor(s), LISTEN_FDS={count}")
    return [PassedSocket(FIRST_FD + index, name) for index, name in enumerate(names)]


@attrs.frozen
class _Kind:
    family: int
    type: int
    listening: bool


def probe(fd: int) -> _Kind:
    """The family and type of socket ``fd``, and whether it listens; ``fd`` stays open.

    Raises:
        ActivationError: ``fd`` is not an open socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise ActivationError(f"fd {fd} is not an open socket: {e.strerror}") from e
    try:
        return _Kind(sock.family, sock.type,
                     bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)))
    finally:
        sock.detach()


def choose_listener(sockets: list[PassedSocket], name: str = "runnergw") -> PassedSocket | None:
    """The socket named ``name``, else the first listening stream socket; ``None`` when
    nothing was passed.

    Raises:
        ActivationError: no stream socket listens among those passed, or the chosen one is
            not an IPv4 or IPv6 socket (a unix socket cannot serve the gateway), or the one
            named ``name`` is a connection (``Accept=yes``) rather than a listener.
    """
    if not sockets:
        return None
    named = [s for s in sockets if s.name == name]
    candidates = named[:1] or sockets
    for passed in candidates:
        kind = probe(passed.fd)
        if kind.type == socket.SOCK_STREAM and kind.listening:
            if kind.family not in (socket.AF_INET, socket.AF_INET6):
                raise ActivationError(
                    f"the socket passed as {passed.describe()} is a "
                    f"{socket.AddressFamily(kind.family).name} socket; the gateway serves on "
                    "TCP only (ListenStream= a port or an IP address and port)")
            return passed
        if named:
            raise ActivationError(f"the socket passed as {passed.describe()} is not a "
                                  "listening stream socket (ListenStream= with Accept=no)")
    raise ActivationError(
        "none of the sockets passed ("
        + ", ".join(s.describe() for s in sockets)
        + ") is a listening stream socket (ListenStream= with Accept=no)")


def make_non_blocking(fd: int) -> None:
    """Make ``fd`` non-blocking, as the reactor needs: the service manager passes it
    blocking."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def forget_environment(environ: MutableMapping[str, str], sockets: list[PassedSocket],
                       keep: PassedSocket | None = None) -> None:
    """Remove the ``LISTEN_*`` variables, and mark the passed descriptors but ``keep`` to be
    closed in programs the gateway starts, so none of them inherits what was meant for it."""
    for variable in _VARIABLES:
        environ.pop(variable, None)
    for passed in sockets:
        if passed != keep:
            try:
                flags = fcntl.fcntl(passed.fd, fcntl.F_GETFD)
                fcntl.fcntl(passed.fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
            except OSError:
                pass  # not open: nothing to inherit
