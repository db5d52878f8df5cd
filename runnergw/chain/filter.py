"""A base class for filters that only need some of the hooks."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange
from runnergw.chain.interfaces import IFilter

__all__ = ["Filter"]


@implementer(IFilter)
class Filter:
    """Every hook does nothing; subclasses override what they need and set ``name``."""

    name = "filter"

    def request(self, exchange: Exchange) -> Any:
        """See ``IFilter.request``."""
        return None

    def response_headers(self, exchange: Exchange) -> None:
        """See ``IFilter.response_headers``."""

    def done(self, exchange: Exchange) -> None:
        """See ``IFilter.done``."""
