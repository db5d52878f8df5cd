"""The metrics listener's pages: ``/metrics`` (Prometheus text, or OpenMetrics when asked),
``/healthz`` (the process serves) and ``/readyz`` (the gateway takes new work). Nothing
else: every other path is a 404. No page needs a token, and none says anything sensitive."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request

from runnergw.health import Readiness

__all__ = ["HealthPage", "MetricsPage", "ReadyPage", "metrics_root"]

_TEXT = b"text/plain; charset=utf-8"


class MetricsPage(Resource):
    """The registry's metrics, encoded as the scraper's ``Accept`` asks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader("accept")
        encode, content_type = choose_encoder(accept or "")
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return encode(self.registry)


class HealthPage(Resource):
    """200 ``ok``: the process answers."""

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", _TEXT)
        request.setHeader(b"cache-control", b"no-store")
        return b"ok\n"


class ReadyPage(Resource):
    """200 ``ready`` when the readiness names no reason, else 503 and the reasons, a line
    each."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", _TEXT)
        request.setHeader(b"cache-control", b"no-store")
        reasons = self.readiness.reasons()
        if not reasons:
            return b"ready\n"
        request.setResponseCode(503)
        return ("not ready\n" + "".join(f"{reason}\n" for reason in reasons)).encode()


class _Root(Resource):
    """Answers nothing itself (404): only its children are pages."""

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)


def metrics_root(registry: CollectorRegistry, readiness: Readiness) -> Resource:
    """The listener's resource tree."""
    root = _Root()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage())
    root.putChild(b"readyz", ReadyPage(readiness))
    return root
