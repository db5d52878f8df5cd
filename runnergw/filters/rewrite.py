"""The ``rewrite`` filter: set and remove headers on the way up and on the way back."""

from __future__ import annotations

from runnergw.config.runners import RewriteSettings
from runnergw.chain.exchange import Exchange
from runnergw.chain.filter import Filter

__all__ = ["RewriteFilter"]


class RewriteFilter(Filter):
    """Applies a route's ``rewrite`` settings (removals first, then the values set)."""

    name = "rewrite"

    def __init__(self, settings: RewriteSettings) -> None:
        self.settings = settings

    def request(self, exchange: Exchange) -> None:
        """Edit the headers sent to the runner."""
        headers = exchange.upstream_headers
        headers.remove_all(self.settings.remove_headers)
        for name, value in self.settings.set_headers.items():
            headers.set(name, value)

    def response_headers(self, exchange: Exchange) -> None:
        """Edit the headers sent back to the client."""
        headers = exchange.response_headers
        headers.remove_all(self.settings.remove_response_headers)
        for name, value in self.settings.set_response_headers.items():
            headers.set(name, value)
