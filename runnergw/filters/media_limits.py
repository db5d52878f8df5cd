"""The ``mediaLimits`` filter: a plan's limits on uploaded media (duration, width).

A model descriptor's ``role_limits`` say, per role, how long or how wide the main input may
be. Once the command terminal has stored the uploads, this filter measures the main input
with ffprobe and, over the limit, answers the signed 403 the SaaS shows as an upgrade prompt.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject, Reply
from runnergw.chain.interfaces import IFilter
from runnergw.jobs.failures import node_failure
from runnergw.jobs.probe import ProbeError, probe_media

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext
    from runnergw.models.types import ModelDescriptor
    from runnergw.websaas.signing import ResponseSigner

__all__ = ["MediaLimitsFilter"]


def _limit_text(value: float) -> str:
    return f"{value:g}"


@implementer(IFilter)
class MediaLimitsFilter:
    """Refuses media over the caller's role limits, after the upload, before the job."""

    name = "mediaLimits"
    after_any = ("role",)
    """The role is settled (defaulted) by the role filter."""

    def __init__(self, model: ModelDescriptor, jobs: Any, signer: ResponseSigner) -> None:
        self.model = model
        self.jobs = jobs
        self.signer = signer

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> MediaLimitsFilter:
        """Needs a pipeline route (its descriptor), the job launcher and the reply signer."""
        model = getattr(context.route, "model", None)
        if model is None or context.jobs is None or context.signer is None:
            raise ValueError("the mediaLimits filter only serves pipeline routes")
        return cls(model, context.jobs, context.signer)

    async def request_body(self, exchange: Exchange) -> None:
        """Measure the main upload against the role's limits."""
        identity = exchange.identity
        role = identity.role if identity is not None else None
        limits = self.model.role_limits.get(role or "", ())
        main = self.model.main_input_id
        path = exchange.uploads.get(main) if main is not None else None
        if not limits or path is None or self.jobs.ffprobe is None:
            return
        directory = os.path.dirname(path)
        try:
            info = await probe_media(self.jobs.launcher, self.jobs.reactor, self.jobs.ffprobe,
                                     path, directory, self.jobs.environment(directory))
        except ProbeError:
            raise Reject(400, "The uploaded file could not be read as media") from None
        except OSError as e:  # ffprobe could not be started, or its launcher died
            raise node_failure(exchange, e, "ffprobe", "The upload could not be measured",
                               self.jobs.jobs_path) from None
        for limit in limits:
            measured = info.measure(limit.attribute)
            if measured is None:
                # A file whose length or size cannot be read must not slip past the limit.
                raise Reject(400, f"The uploaded file's {limit.attribute} could not be measured",
                             reason=f"role limit: {limit.attribute} not measurable")
            # Whole seconds and pixels, as the old node compared them (30.6 s passes 30).
            if int(measured) > limit.value:
                self._refuse(exchange, limit.attribute, limit.value, measured)
                return

    def _refuse(self, exchange: Exchange, attribute: str, value: float,
                measured: float) -> None:
        unit = "s" if attribute == "duration" else "px"
        description = (f"Input exceeds the {attribute} limit {_limit_text(value)}{unit}, "
                       "upgrade your plan")
        exchange.outcome = "denied"
        exchange.reason = f"role limit: {attribute} {measured:g} > {value:g}"
        identity = exchange.identity
        token = self.signer.sign(subject=identity.subject if identity is not None else None,
                                 endpoint=self.model.endpoint, output_hashes={})
        body = json.dumps({
            "outputs": {"allowed": False, "restricted_at": {
                "title": "Exceeds the plan limit", "description": description}},
            "token": token,
        }).encode()
        exchange.response = Reply(403, body, content_type="application/json")
