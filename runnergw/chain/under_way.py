"""The clients of a terminal's exchanges under way, so that its ``stop()`` can end them."""

from __future__ import annotations

from typing import Any

__all__ = ["STOPPING_MESSAGE", "UnderWay"]

STOPPING_MESSAGE = "the gateway is shutting down"
"""What a client whose answer the gateway had to end is told."""


class UnderWay:
    """A terminal's exchanges under way: ``add`` when one starts, ``discard`` when it ends,
    ``end_all`` when the terminal stops."""

    def __init__(self) -> None:
        self._clients: set[Any] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, client: Any) -> None:
        self._clients.add(client)

    def discard(self, client: Any) -> None:
        self._clients.discard(client)

    def end_all(self) -> None:
        """End every answer under way now, cleanly: the chain's client ends it with a final
        error (``FilteredClient.end_now``); a bare client stream is dropped."""
        for client in list(self._clients):
            end_now = getattr(client, "end_now", None)
            if end_now is not None:
                end_now(STOPPING_MESSAGE)
            else:
                client.abort(STOPPING_MESSAGE)
        self._clients.clear()
