"""The listening socket the workers share: the one the service manager passed
(``LISTEN_FDS``), else one bound on ``server.address``. The supervisor only holds it; the
workers accept on it."""

from __future__ import annotations

import os
import socket

import attrs

from runnergw.config.reader import ListenAddress
from runnergw.systemd.activation import (
    ActivationError,
    choose_listener,
    forget_environment,
    make_non_blocking,
    passed_sockets,
    start_environment,
)

__all__ = ["BACKLOG", "SharedSocket", "open_shared_socket"]

BACKLOG = 1024
"""Connections the kernel queues before the workers accept them."""


@attrs.frozen
class SharedSocket:
    """A listening socket's descriptor, and where it listens."""

    fd: int
    host: str
    port: int
    passed: str = ""
    """How the service manager passed it (``fd 3 (runnergw)``); empty when bound here."""

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def open_shared_socket(address: ListenAddress) -> SharedSocket:
    """The socket the service manager passed, else one listening on ``address``.

    Raises:
        SystemExit: the passed sockets cannot be used, or ``address`` cannot be bound.
    """
    try:
        sockets = passed_sockets(start_environment(os.environ), os.getpid())
        chosen = choose_listener(sockets)
    except ActivationError as e:
        raise SystemExit(f"runnergw: socket activation: {e}") from e
    forget_environment(os.environ, sockets, keep=chosen)
    if chosen is not None:
        make_non_blocking(chosen.fd)
        return _described(chosen.fd, passed=chosen.describe())
    host = address.host or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, address.port))
        listener.listen(BACKLOG)
        listener.setblocking(False)
    except OSError as e:
        listener.close()
        raise SystemExit(f"runnergw: cannot listen on {address}: {e.strerror or e}") from e
    return _described(listener.detach(), passed="")


def _described(fd: int, passed: str) -> SharedSocket:
    sock = socket.socket(fileno=fd)
    try:
        bound = sock.getsockname()
    finally:
        sock.detach()
    return SharedSocket(fd, bound[0], bound[1], passed)
