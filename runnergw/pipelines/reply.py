"""Write a pipeline's answer in the old node's JSON shape, a piece at a time.

``{"outputs": {"<id>": "data:<mime>;base64,<…>" | null, …}, "token": "<JWT>"}``: each output
file is read, base64-encoded and hashed in blocks as the client takes them, so a 500 MB video
never sits in memory; the signed token, which carries every output's SHA-256, comes last
(the terminal writes it).
"""

from __future__ import annotations

import base64
import contextlib
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

from runnergw.pipeline.interfaces import IClientStream

__all__ = ["OutputReply", "mime_type_for"]

_BLOCK = 3 * 16384
"""Raw bytes per piece (a multiple of 3, so pieces of base64 join without padding)."""


def mime_type_for(output_format: str) -> str:
    """The MIME type of an output format (``mp3`` → ``audio/mpeg``)."""
    guessed, _ = mimetypes.guess_type(f"output.{output_format}", strict=False)
    return guessed or "application/octet-stream"


def _open_output(path: str) -> BinaryIO | None:
    """The output file, or None when it is missing, empty or not a regular file.

    A symbolic link is not followed (it could point at any file the gateway may read), and a
    FIFO is opened without blocking and refused (reading it would stall the whole gateway).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


@implementer(IPushProducer)
class OutputReply:
    """Streams ``{"outputs": {…}`` to the client; ``done`` fires once it is written, and
    ``hashes`` then holds every output's SHA-256 for the token that closes the reply."""

    def __init__(
        self,
        client: IClientStream,
        outputs: Mapping[str, tuple[str, str]],
        cooperator: Cooperator,
    ) -> None:
        """``outputs`` maps output id to (file path, format)."""
        self.client = client
        self.outputs = outputs
        self.hashes: dict[str, str | None] = {}
        self.missing: list[str] = []
        self._task = cooperator.cooperate(self._pieces())
        self.done: Deferred[Any] = self._task.whenDone()

    def _pieces(self) -> Iterator[None]:
        write = self.client.write
        write(b'{"outputs": {')
        for index, (output_id, (path, output_format)) in enumerate(self.outputs.items()):
            key = json.dumps(output_id).encode()
            write((b", " if index else b"") + key + b": ")
            stream = _open_output(path)
            if stream is None:
                self.hashes[output_id] = None
                self.missing.append(output_id)
                write(b"null")
                continue
            digest = hashlib.sha256()
            with stream:
                write(f'"data:{mime_type_for(output_format)};base64,'.encode())
                while block := stream.read(_BLOCK):
                    digest.update(block)
                    write(base64.b64encode(block))
                    yield None
            write(b'"')
            self.hashes[output_id] = "sha256:" + digest.hexdigest()
        write(b"}")

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
