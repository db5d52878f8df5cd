"""Write a pipeline's answer in the old node's JSON shape, a piece at a time.

``{"outputs": {"<id>": "data:<mime>;base64,<…>" | null, …}, "token": "<JWT>"}``: each output
file is read, base64-encoded and hashed in blocks as the client takes them, so a 500 MB video
never sits in memory; the signed token, which carries every output's SHA-256, comes last.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Cooperator
from zope.interface import implementer

from runnergw.pipeline.interfaces import IClientStream

__all__ = ["OutputReply", "mime_type_for"]

_BLOCK = 3 * 16384
"""Raw bytes per piece (a multiple of 3, so pieces of base64 join without padding)."""


def mime_type_for(output_format: str) -> str:
    """The MIME type of an output format (``mp3`` → ``audio/mpeg``)."""
    guessed, _ = mimetypes.guess_type(f"output.{output_format}", strict=False)
    return guessed or "application/octet-stream"


@implementer(IPushProducer)
class OutputReply:
    """Streams the outputs to the client, then the token ``sign(hashes)`` returns."""

    def __init__(
        self,
        client: IClientStream,
        outputs: Mapping[str, tuple[str, str]],
        sign: Callable[[Mapping[str, str | None]], str],
        cooperator: Cooperator,
    ) -> None:
        """``outputs`` maps output id to (file path, format)."""
        self.client = client
        self.outputs = outputs
        self.sign = sign
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
            try:
                stream = open(path, "rb")  # noqa: SIM115 - closed below, across yields
            except OSError:
                stream = None
            if stream is None or os.fstat(stream.fileno()).st_size == 0:
                if stream is not None:
                    stream.close()
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
        token = self.sign(self.hashes)
        write(b'}, "token": ' + json.dumps(token).encode() + b"}")
        self.client.finish()

    def pauseProducing(self) -> None:
        self._task.pause()

    def resumeProducing(self) -> None:
        self._task.resume()

    def stopProducing(self) -> None:
        self._task.stop()
