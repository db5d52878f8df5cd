"""Reply tokens signed by a thread of their own.

An RSA signature takes a few hundred microseconds, during which OpenSSL releases the GIL: in
a thread, the event loop runs on meanwhile. One thread keeps up with thousands of replies a
second; handing it work through a ``SimpleQueue`` and answering through ``callFromThread``
costs the event loop a few microseconds, where a thread pool's dispatch costs tens.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from runnergw.websaas.signing import ResponseSigner

__all__ = ["SigningThread"]


class SigningThread:
    """Signs reply tokens with ``signer`` in one thread, started on first use."""

    def __init__(self, reactor: Any, signer: ResponseSigner) -> None:
        self.reactor = reactor
        self.signer = signer
        self._work: queue.SimpleQueue[tuple[Deferred[str], dict[str, Any]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def sign(self, *, subject: str | None, endpoint: str,
             output_hashes: Mapping[str, str | None]) -> Deferred[str]:
        """The token of one reply (see ``ResponseSigner.sign``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="runnergw-signing",
                                            daemon=True)
            self._thread.start()
        signed: Deferred[str] = Deferred()
        self._work.put((signed, {"subject": subject, "endpoint": endpoint,
                                 "output_hashes": output_hashes}))
        return signed

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            signed, arguments = item
            try:
                token = self.signer.sign(**arguments)
            except BaseException:
                self.reactor.callFromThread(signed.errback, Failure())
            else:
                self.reactor.callFromThread(signed.callback, token)

    def stop(self) -> None:
        """Let the thread end once the work already given is done."""
        if self._thread is not None:
            self._work.put(None)
            self._thread = None
