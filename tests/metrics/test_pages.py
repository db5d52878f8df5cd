"""The metrics listener's pages: /metrics, /healthz, /readyz, and nothing else."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from runnergw.health import Readiness
from runnergw.metrics.pages import metrics_root

__all__ = ["HealthPageTests", "MetricsPageTests", "OtherPathTests", "ReadyPageTests"]


class _PagesTestCase(SynchronousTestCase):

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        Counter("things", "Things", registry=self.registry).inc(3)
        self.readiness = Readiness()
        self.root = metrics_root(self.registry, self.readiness)

    def get(self, path: bytes, method: bytes = b"GET",
            headers: dict[bytes, bytes] | None = None) -> DummyRequest:
        request = DummyRequest([segment for segment in path.split(b"/")[1:]])
        request.method = method
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, [value])
        body = getChildForRequest(self.root, request).render(request)
        if isinstance(body, bytes):
            request.write(body)
        request.finish()
        return request

    def body(self, request: DummyRequest) -> bytes:
        return b"".join(request.written)

    def status(self, request: DummyRequest) -> int:
        """The status sent (a request left at its default answers 200)."""
        return 200 if request.responseCode is None else int(request.responseCode)


class MetricsPageTests(_PagesTestCase):
    """``GET /metrics``."""

    def test_text_format(self) -> None:
        """Prometheus's text format, which its own parser reads."""
        request = self.get(b"/metrics")
        self.assertEqual(self.status(request), 200)
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0]
                        .startswith(b"text/plain"))
        families = {family.name: family for family in
                    text_string_to_metric_families(self.body(request).decode())}
        self.assertEqual(families["things"].samples[0].value, 3.0)

    def test_openmetrics_when_asked(self) -> None:
        """OpenMetrics for a scraper that asks for it, ending with ``# EOF``."""
        request = self.get(b"/metrics", headers={
            b"accept": b"application/openmetrics-text; version=1.0.0"})
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0]
                        .startswith(b"application/openmetrics-text"))
        self.assertTrue(self.body(request).endswith(b"# EOF\n"))


class HealthPageTests(_PagesTestCase):
    """``GET /healthz``."""

    def test_ok(self) -> None:
        """200 ``ok`` whenever the process answers, draining or not."""
        self.readiness.draining = True
        request = self.get(b"/healthz")
        self.assertEqual((self.status(request), self.body(request)), (200, b"ok\n"))


class ReadyPageTests(_PagesTestCase):
    """``GET /readyz``."""

    def test_ready(self) -> None:
        """200 when nothing stands in the way."""
        request = self.get(b"/readyz")
        self.assertEqual((self.status(request), self.body(request)), (200, b"ready\n"))

    def test_not_ready_lists_reasons(self) -> None:
        """503 with every reason, a line each, in plain text."""
        self.readiness.draining = True
        self.readiness.add_check(lambda: ["runner gpu: no healthy host"])
        request = self.get(b"/readyz")
        self.assertEqual(self.status(request), 503)
        self.assertEqual(self.body(request),
                         b"not ready\ndraining\nrunner gpu: no healthy host\n")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/plain; charset=utf-8"])


class OtherPathTests(_PagesTestCase):
    """Only the three pages exist."""

    def test_not_found(self) -> None:
        """The root, unknown paths and paths under a page are 404."""
        for path in (b"/", b"/metricz", b"/metrics/extra", b"/api/generate"):
            with self.subTest(path=path):
                self.assertEqual(self.status(self.get(path)), 404)

    def test_other_methods(self) -> None:
        """A page is read, not written: POST is refused."""
        request = DummyRequest([b"metrics"])
        request.method = b"POST"
        with self.assertRaises(UnsupportedMethod):
            getChildForRequest(self.root, request).render(request)
