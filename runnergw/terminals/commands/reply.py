"""Write a pipeline's answer in the old node's JSON shape, a piece at a time.

``{"outputs": {"<id>": "data:<mime>;base64,<…>" | null, …}, "token": "<JWT>"}``: each output
file is read, base64-encoded and hashed in blocks as the client takes them, so a 500 MB video
never sits in memory; the signed token, which carries every output's SHA-256, comes last
(the terminal writes it). Small outputs are read at once instead, and the reply goes out
whole, with a Content-Length.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import mimetypes
import os
import stat
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Cooperator, NotPaused, TaskFinished
from zope.interface import implementer

from runnergw.http.interfaces import IClientStream

__all__ = ["OutputReply", "Outputs", "mime_type_for"]

_NOT_AN_OUTPUT = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO})
"""Why an output path cannot be opened that lies with the job: nothing there, a symbolic
link, a socket."""

_BLOCK = 3 * 16384
"""Raw bytes per piece (a multiple of 3, so pieces of base64 join without padding)."""


def mime_type_for(output_format: str) -> str:
    """The MIME type of an output format (``mp3`` → ``audio/mpeg``)."""
    guessed, _ = mimetypes.guess_type(f"output.{output_format}", strict=False)
    return guessed or "application/octet-stream"


def _open_output(path: str) -> tuple[BinaryIO, int] | None:
    """The output file and its size, or None when it is missing, empty or not a regular file.

    A symbolic link is not followed (it could point at any file the gateway may read), and a
    FIFO is opened without blocking and refused (reading it would stall the whole gateway).

    Raises:
        OSError: the node cannot open it (too many open files, a failing disk): that is not
            the job's doing, and must not be signed as an output the job did not make.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in _NOT_AN_OUTPUT:
            return None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info.st_size


class Outputs:
    """The outputs of one job, opened: sizes known before a byte is read."""

    def __init__(self, outputs: Mapping[str, tuple[str, str]]) -> None:
        """``outputs`` maps output id to (file path, format).

        Raises:
            OSError: an output cannot be opened for a reason of the node's (see
                ``_open_output``); those already open are closed.
        """
        self.opened: dict[str, tuple[tuple[BinaryIO, int] | None, str]] = {}
        try:
            for output_id, (path, output_format) in outputs.items():
                self.opened[output_id] = (_open_output(path), output_format)
        except OSError:
            self.close()
            raise
        self.size = sum(entry[1] for entry, _ in self.opened.values() if entry is not None)
        self.hashes: dict[str, str | None] = {}
        self.missing: list[str] = []

    def close(self) -> None:
        for entry, _ in self.opened.values():
            if entry is not None:
                entry[0].close()

    def encode(self) -> Iterator[bytes]:
        """``{"outputs": {…}`` in pieces; each output's bytes in blocks of at most ``_BLOCK``.

        An output is read up to the size it had when opened: a helper that escaped the job
        and still appends to it cannot make the reply endless.
        """
        yield b'{"outputs": {'
        for index, (output_id, (entry, output_format)) in enumerate(self.opened.items()):
            key = json.dumps(output_id).encode()
            yield (b", " if index else b"") + key + b": "
            if entry is None:
                self.hashes[output_id] = None
                self.missing.append(output_id)
                yield b"null"
                continue
            stream, left = entry
            digest = hashlib.sha256()
            yield f'"data:{mime_type_for(output_format)};base64,'.encode()
            while left > 0 and (block := stream.read(min(_BLOCK, left))):
                left -= len(block)
                digest.update(block)
                yield base64.b64encode(block)
            yield b'"'
            self.hashes[output_id] = "sha256:" + digest.hexdigest()
        yield b"}"


    def read_all(self) -> bytes:
        """``{"outputs": {…}`` at once (for small outputs: reading them takes less than
        arranging to stream them); ``hashes`` and ``missing`` are then filled. Closes the
        outputs."""
        try:
            return b"".join(self.encode())
        finally:
            self.close()


@implementer(IPushProducer)
class OutputReply:
    """Streams ``{"outputs": {…}`` to the client; ``done`` fires once it is written, and
    ``hashes`` then holds every output's SHA-256 for the token that closes the reply."""

    def __init__(self, client: IClientStream, outputs: Outputs,
                 cooperator: Cooperator) -> None:
        """The reply closes ``outputs`` once it is over."""
        self.client = client
        self._outputs = outputs
        self.hashes = self._outputs.hashes
        self.missing = self._outputs.missing
        self._task = cooperator.cooperate(self._pieces())
        self.done: Deferred[Any] = self._task.whenDone()

    def _pieces(self) -> Iterator[None]:
        write = self.client.write
        try:
            for piece in self._outputs.encode():
                write(piece)
                yield None
        finally:
            self._outputs.close()

    def pauseProducing(self) -> None:
        with contextlib.suppress(TaskFinished):
            self._task.pause()

    def resumeProducing(self) -> None:
        with contextlib.suppress(TaskFinished, NotPaused):
            self._task.resume()

    def stopProducing(self) -> None:
        """Stop for good (the client left); ``done`` fails with ``TaskStopped``. Safe to call
        more than once and after the reply is complete."""
        with contextlib.suppress(TaskFinished):
            self._task.stop()
        self._outputs.close()
