"""The README's example filter, on its own and by its dotted path in a real gateway."""

from __future__ import annotations

import json
from pathlib import Path

import ollama
import yaml
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.routes import build_router
from runnergw.startup import prepare
from runnergw.testing import Answer, filter_from_settings, make_exchange, run_filters
from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.gateway import start_gateway
from tests.helpers.ollama_proxy import in_thread_with, ollama_client, start_fake

__all__ = ["BlockedModelsGatewayTests", "BlockedModelsSettingsTests", "BlockedModelsTests"]

_DOTTED = "tests.examples.blocked_models.BlockedModels"


def _chat(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


class BlockedModelsTests(SynchronousTestCase):
    """The filter run on single exchanges, without a server."""

    def setUp(self) -> None:
        self.filter = filter_from_settings(_DOTTED, {"models": ["big:405b"],
                                                     "message": "too big here"})

    def test_blocked_model_refused(self) -> None:
        """A chat naming a blocked model gets 403 in Ollama's shape; the runner never hears."""
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("POST", "/api/chat", body=_chat("big:405b"))))
        self.assertEqual((run.status, run.json()), (403, {"error": "too big here: big:405b"}))
        self.assertFalse(run.terminal.called)
        self.assertEqual(run.exchange.reason, "blocked model big:405b")

    def test_read_as_ollama_reads_it(self) -> None:
        """Neither an escaped path nor another spelling of the key slips past the filter."""
        for path, body in (
            ("/api/ch%61t", _chat("big:405b")),
            ("/api/chat", b'{"MODEL": "big:405b", "messages": []}'),
            ("/api/chat", b'{"model": "small:1b", "Model": "big:405b"}'),
        ):
            with self.subTest(path=path, body=body):
                run = self.successResultOf(run_filters(
                    [self.filter], make_exchange("POST", path, body=body)))
                self.assertEqual(run.status, 403)
                self.assertFalse(run.terminal.called)

    def test_escaped_model_list_filtered(self) -> None:
        """``/api/t%61gs`` is the model list too, and is filtered."""
        listing = {"models": [{"name": "big:405b"}, {"name": "small:1b"}]}
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("GET", "/api/t%61gs"), Answer.json(listing)))
        self.assertEqual(run.json(), {"models": [{"name": "small:1b"}]})

    def test_other_model_passes_unchanged(self) -> None:
        """Another model reaches the runner with the body as sent and its length."""
        body = _chat("small:1b")
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("POST", "/api/chat", body=body),
            Answer.ndjson({"done": True})))
        self.assertEqual(run.status, 200)
        self.assertEqual((run.terminal.received, run.terminal.received_length),
                         (body, len(body)))

    def test_not_json_refused(self) -> None:
        """A body that is not a JSON object is a 400, not waved through."""
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("POST", "/api/generate", body=b"[1, 2]")))
        self.assertEqual(run.status, 400)
        self.assertFalse(run.terminal.called)

    def test_body_over_limit_refused(self) -> None:
        """A body larger than maxBodySize is refused with 413 before it is read."""
        small = filter_from_settings(_DOTTED, {"models": ["x"], "maxBodySize": "1KiB"})
        run = self.successResultOf(run_filters(
            [small], make_exchange("POST", "/api/chat", body=b"{" + b" " * 2000 + b"}")))
        self.assertEqual(run.status, 413)

    def test_model_list_filtered(self) -> None:
        """The runner's model list reaches the client without the blocked models."""
        listing = {"models": [{"name": "big:405b"}, {"name": "small:1b"}]}
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("GET", "/api/tags"), Answer.json(listing)))
        self.assertEqual(run.json(), {"models": [{"name": "small:1b"}]})
        self.assertEqual(run.client.length, len(run.body))

    def test_other_paths_untouched(self) -> None:
        """Requests that name no model are neither read nor observed."""
        run = self.successResultOf(run_filters(
            [self.filter], make_exchange("GET", "/api/ps"), Answer.json({"models": []})))
        self.assertEqual(run.exchange.response_observers, [])
        self.assertIsNone(run.exchange.body_limit)


class BlockedModelsSettingsTests(SynchronousTestCase):
    """The filter's options are checked at load, like every setting."""

    def test_options_errors_located(self) -> None:
        """A missing list and a wrong type are each named with file, line and YAML path."""
        errors = self.assertRaises(ConfigErrors, filter_from_settings, _DOTTED,
                                   {"message": 3, "colour": "red"})
        text = "\n".join(str(e) for e in errors.errors)
        self.assertIn(f'filters[0]["{_DOTTED}"].models: required', text)
        self.assertIn(f'filters[0]["{_DOTTED}"].message: expected a string, got 3', text)
        self.assertIn(f'filters[0]["{_DOTTED}"].colour: unknown setting', text)

    def test_validator_refusal_located(self) -> None:
        """An empty model list is refused with the option's own message."""
        errors = self.assertRaises(ConfigErrors, filter_from_settings, _DOTTED, {"models": []})
        self.assertIn("models: name at least one model", str(errors))

    def test_settings_file_line(self) -> None:
        """In a settings file, the error names the file and the line of the filter."""
        directory = Path(self.mktemp())
        directory.mkdir()
        write_signing_keypair(directory / "k", directory / "k.pub")
        path = directory / "settings.yaml"
        path.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(directory / "k.pub")},
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "runners": [{"host": "127.0.0.1:11434", "filters": [
                "token", "role", {_DOTTED: {"models": 5}}, {_DOTTED: {"modles": ["x"]}}]}],
        }, sort_keys=False))
        settings = load_settings(str(path), {})
        parts = prepare(settings)
        self.addCleanup(parts.audit_log.close)
        errors = self.assertRaises(ConfigErrors, build_router, settings, parts, reactor)
        lines = sorted(str(e).partition("settings.yaml:")[2] for e in errors.errors)
        where = f'runners[0].filters[%d]["{_DOTTED}"]'
        self.assertEqual(lines, [
            f"13: {where % 2}.models: expected a list of strings, got 5",
            f"15: {where % 3}.models: required",
            f"15: {where % 3}.modles: unknown setting (check the spelling; see the settings "
            "reference)",
        ])


class BlockedModelsGatewayTests(TestCase):
    """The filter named by its dotted path in a real gateway, used by the official client."""

    timeout = 10

    def setUp(self) -> None:
        self.upstream = start_fake(self)
        runner = self.upstream.runner("/ollama", filters=[
            "token", "role", {_DOTTED: {"models": ["llama3.2:1b"], "message": "not here"}},
            "audit"])
        self.gateway = start_gateway(self, [runner])
        self.client = ollama_client(self.gateway, "/ollama", self.gateway.token())

    async def test_blocked_model_is_a_clean_client_error(self) -> None:
        """``ollama.generate`` on a blocked model raises ResponseError 403 with the message."""
        error = await deferToThread(in_thread_with, self.client, lambda c: self.assertRaises(
            ollama.ResponseError, c.generate, model="llama3.2:1b", prompt="hi"))
        self.assertEqual((error.status_code, error.error), (403, "not here: llama3.2:1b"))
        self.assertEqual(self.upstream.fake.requests, [])

    async def test_list_hides_blocked_models(self) -> None:
        """``ollama.list()`` shows none of the blocked models."""
        listed = await deferToThread(in_thread_with, self.client, lambda c: c.list())
        self.assertEqual(listed.models, [])

    async def test_other_models_stream(self) -> None:
        """Another model streams as before; the runner gets the body the client sent."""
        parts = await deferToThread(in_thread_with, self.client, lambda c: list(c.generate(
            model="qwen3:0.6b", prompt="hi", stream=True, options={"num_predict": 3})))
        self.assertEqual("".join(p.response for p in parts), "t0 t1 t2 ")
        [seen] = self.upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["model"], "qwen3:0.6b")
