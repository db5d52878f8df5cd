"""The ``rewrite`` filter: set and remove headers on the way up and on the way back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from runnergw.chain.exchange import Exchange
from runnergw.chain.interfaces import IFilter
from runnergw.config.runners import RewriteSettings

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["RewriteFilter"]


@implementer(IFilter)
class RewriteFilter:
    """Applies a route's ``rewrite`` settings (removals first, then the values set).

    Its options are given under the filter (``- rewrite: {setHeaders: …}``) or, as before
    options existed, in the runner's own ``rewrite`` section.
    """

    name = "rewrite"
    Options = RewriteSettings

    def __init__(self, settings: RewriteSettings) -> None:
        self.settings = settings

    @classmethod
    def from_settings(cls, options: RewriteSettings, context: FilterContext) -> RewriteFilter:
        """Options given under the filter, else the runner's ``rewrite`` section."""
        if options == RewriteSettings():
            options = getattr(context.route, "rewrite", options)
        return cls(options)

    def request_headers(self, exchange: Exchange) -> None:
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
