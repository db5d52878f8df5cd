"""The ``rewrite`` filter on its own: headers set and removed on the way up and back."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Reject
from runnergw.config.errors import ConfigErrors
from runnergw.config.runners import RewriteSettings, RunnerSettings
from runnergw.filters.rewrite import RewriteFilter
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters

__all__ = ["RewriteFilterTests", "RewriteSettingsTests"]

_RUNNER = RunnerSettings(name="local", path="/local", host="127.0.0.1", port=11434,
                         rewrite=RewriteSettings(set_headers={"X-From": "runner-section"}))


class RewriteFilterTests(SynchronousTestCase):
    """Header changes seen by the runner and by the client."""

    def serve(self, rewrite: RewriteFilter) -> FilterRun:
        exchange = make_exchange("POST", "/api/chat", headers=[
            ("Host", "gw"), ("User-Agent", "curl"), ("X-Debug", "1"), ("X-Keep", "k")])
        answer = Answer(200, (("Content-Type", "application/json"), ("Server", "ollama"),
                              ("X-Ollama-Version", "0.5")), [b"{}"])
        return self.successResultOf(run_filters([rewrite], exchange, answer))

    def test_request_headers(self) -> None:
        """Removed headers never reach the runner; set ones replace what the client sent."""
        run = self.serve(RewriteFilter(RewriteSettings(
            set_headers={"User-Agent": "runnergw", "X-Tenant": "a"},
            remove_headers=("x-debug",))))
        headers = run.terminal.upstream_headers
        self.assertIsNone(headers.get("x-debug"))
        self.assertEqual(headers.get_all("user-agent"), ["runnergw"])
        self.assertEqual(headers.get("x-tenant"), "a")
        self.assertEqual(headers.get("x-keep"), "k")

    def test_response_headers(self) -> None:
        """Removed response headers never reach the client; set ones are added."""
        run = self.serve(RewriteFilter(RewriteSettings(
            set_response_headers={"Server": "gateway", "X-Frame-Options": "DENY"},
            remove_response_headers=("X-Ollama-Version",))))
        headers = run.client.headers
        self.assertIsNone(headers.get("x-ollama-version"))
        self.assertEqual(headers.get_all("server"), ["gateway"])
        self.assertEqual(headers.get("x-frame-options"), "DENY")

    def test_removed_then_set(self) -> None:
        """A header both removed and set ends up with the value set."""
        run = self.serve(RewriteFilter(RewriteSettings(set_headers={"X-Debug": "0"},
                                                       remove_headers=("X-Debug",))))
        self.assertEqual(run.terminal.upstream_headers.get_all("x-debug"), ["0"])

    def test_error_replies_rewritten_too(self) -> None:
        """Response headers are also set on a refusal made by a filter after it."""

        class Deny:
            name = "deny"

            def request_headers(self, exchange: Exchange) -> None:
                raise Reject(401, "missing bearer token")

        rewrite = RewriteFilter(RewriteSettings(set_response_headers={"X-Seen": "1"}))
        run = self.successResultOf(run_filters([rewrite, Deny()], make_exchange()))
        self.assertEqual((run.status, run.client.headers.get("x-seen")), (401, "1"))


class RewriteSettingsTests(SynchronousTestCase):
    """Where the filter's settings come from."""

    def test_options_under_the_filter(self) -> None:
        """Options given under the filter are used, the runner's section left aside."""
        built = filter_from_settings("rewrite", {"setHeaders": {"X-From": "filter"},
                                                 "removeResponseHeaders": ["Server"]},
                                     route=_RUNNER)
        self.assertEqual(built.settings, RewriteSettings(
            set_headers={"X-From": "filter"}, remove_response_headers=("Server",)))

    def test_runner_section(self) -> None:
        """Without options, the runner's own rewrite section is used, as before options."""
        self.assertEqual(filter_from_settings("rewrite", route=_RUNNER).settings,
                         _RUNNER.rewrite)
        self.assertEqual(filter_from_settings("rewrite", {}, route=_RUNNER).settings,
                         _RUNNER.rewrite)

    def test_nothing_anywhere(self) -> None:
        """Without options nor a runner section, the filter changes nothing."""
        self.assertEqual(filter_from_settings("rewrite").settings, RewriteSettings())

    def test_framing_headers_refused(self) -> None:
        """Options touching the headers that frame the connection are refused, located."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, "rewrite",
                                  {"setHeaders": {"Content-Length": "0"},
                                   "removeHeaders": ["bad name"]})
        self.assertEqual([str(e) for e in error.errors], [
            '<test>: filters[0].rewrite.setHeaders: "Content-Length" is set by the gateway '
            "itself and cannot be rewritten",
            '<test>: filters[0].rewrite.removeHeaders: "bad name" is not a valid header name',
        ])
