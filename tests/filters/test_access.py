"""The ``access`` filter after the ``role`` filter: the endpoints and models a role may use,
read as Ollama reads them, and the rewrites its rules ask for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Identity
from runnergw.config.errors import ConfigErrors
from runnergw.config.policy import PolicySettings
from runnergw.config.roles import RoleSettings
from runnergw.config.settings import Settings
from runnergw.filters.access import AccessFilter
from runnergw.filters.role import RoleFilter
from runnergw.ollama.endpoints import endpoint_for
from runnergw.ollama.gojson import decode_object
from runnergw.ollama.model_names import normalize_model_name
from runnergw.ollama.rewrites import requested_model
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters

__all__ = ["AliasTests", "BodyBoundTests", "EndpointTests", "FromSettingsTests",
           "GoReadingTests", "KeepAliveTests", "ModelListTests", "ModelTests",
           "WithoutRolesTests"]

_ROLES = {
    "user": RoleSettings("user", models=("llama3.2:*", "nomic-embed-text"),
                         aliases={"fast": "llama3.2:1b"}),
    "plain": RoleSettings("plain", models=("llama3.2",)),
    "embedder": RoleSettings("embedder", models=("nomic-embed-text",), api=("inference",)),
    "reader": RoleSettings("reader", api=("catalogue",)),
    "nothing": RoleSettings("nothing", api=()),
    "admin": RoleSettings("admin", models=("*",),
                          api=("inference", "catalogue", "management")),
    "pinned": RoleSettings("pinned", models=("llama3.2:*", "nomic-embed-text"),
                           aliases={"fast": "llama3.2:1b"}, keep_alive="5m"),
    "forever": RoleSettings("forever", keep_alive=-1),
}

_SHA = "sha256:" + "ab" * 32


def _body(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def _go_model(body: bytes, path: str) -> str | None:
    """The model Ollama reads in ``body`` sent to ``path``, normalized."""
    endpoint = endpoint_for(path)
    assert endpoint is not None, path
    model = requested_model(decode_object(body), endpoint)
    return None if model is None else normalize_model_name(model)


class _Serving(SynchronousTestCase):
    """Exchanges of a caller with a role claim, through ``role`` then ``access``."""

    max_body_size = 1 << 20

    def serve(self, role: str, method: str, path: str, body: bytes | None = None,
              answer: Answer | None = None, *, roles: Mapping[str, RoleSettings] = _ROLES,
              before: tuple[Any, ...] = (), **options: Any) -> FilterRun:
        exchange = make_exchange(method, path, body=body, **options)
        exchange.identity = Identity("alice", role, {"role": role}, "v4.public")
        chain = [*before, RoleFilter(None, roles, "user"),
                 AccessFilter(roles, self.max_body_size)]
        return self.successResultOf(run_filters(chain, exchange, answer or Answer()))

    def chat(self, role: str, body: bytes, path: str = "/api/chat") -> FilterRun:
        return self.serve(role, "POST", path, body)

    def assertRefused(self, run: FilterRun, status: int, message: str) -> None:
        self.assertEqual((run.status, run.json()), (status, {"error": message}))
        self.assertFalse(run.terminal.called)

    def assertPassed(self, run: FilterRun, body: bytes, model: str | None) -> None:
        """The runner was called with exactly ``body``, which Ollama reads as ``model``, the
        model the audit records."""
        self.assertEqual(run.status, 200)
        self.assertTrue(run.terminal.called)
        self.assertEqual(run.terminal.received, body)
        self.assertEqual(run.terminal.received_length, len(body))
        self.assertEqual(run.exchange.model, model)
        if model is not None:
            self.assertEqual(_go_model(body, run.exchange.api_path), model)


_MODEL = _body(model="llama3.2:1b")
_EMBED = _body(model="nomic-embed-text")

_INFERENCE = (
    ("POST", "/api/generate", _MODEL),
    ("POST", "/api/chat", _MODEL),
    ("POST", "/api/embed", _EMBED),
    ("POST", "/api/embeddings", _EMBED),
    ("POST", "/v1/chat/completions", _MODEL),
    ("POST", "/v1/completions", _MODEL),
    ("POST", "/v1/embeddings", _EMBED),
)
_CATALOGUE = (
    ("GET", "/api/tags", None),
    ("HEAD", "/api/tags", None),
    ("POST", "/api/show", _MODEL),
    ("GET", "/api/ps", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/llama3.2:1b", None),
)
_MANAGEMENT = (
    ("POST", "/api/pull", _MODEL),
    ("POST", "/api/push", _body(model="alice/llama3.2:1b")),
    ("DELETE", "/api/delete", _MODEL),
    ("POST", "/api/copy", _body(source="llama3.2:1b", destination="llama3.2:mine")),
    ("POST", "/api/create", _body(model="llama3.2:mine", **{"from": "llama3.2:1b"})),
    ("HEAD", f"/api/blobs/{_SHA}", None),
    ("POST", f"/api/blobs/{_SHA}", b"GGUF"),
)


class EndpointTests(_Serving):
    """Which endpoints each role reaches, and paths or methods Ollama does not serve."""

    def assertGroup(self, endpoints: tuple[tuple[str, str, bytes | None], ...], group: str,
                    allowed: tuple[str, ...], refused: tuple[str, ...]) -> None:
        for method, path, body in endpoints:
            for role in allowed:
                with self.subTest(role=role, method=method, path=path):
                    run = self.serve(role, method, path, body)
                    self.assertEqual(run.status, 200)
                    self.assertTrue(run.terminal.called)
            for role in refused:
                with self.subTest(role=role, method=method, path=path):
                    run = self.serve(role, method, path, body)
                    shown = path if "/blobs/" not in path else "/api/blobs/{digest}"
                    shown = "/v1/models/{model}" if shown.startswith("/v1/models/") else shown
                    if method == "HEAD":
                        # The refusal of a HEAD request has no body.
                        self.assertEqual((run.status, run.body), (403, b""))
                        self.assertFalse(run.terminal.called)
                    else:
                        self.assertRefused(
                            run, 403, f'role "{role}" may not use {group} endpoints ({shown})')
                    self.assertEqual((run.exchange.outcome, run.exchange.reason),
                                     ("denied", f"{group} not allowed"))

    def test_inference(self) -> None:
        """Generation and embeddings, native and OpenAI-style, are the ``inference`` group:
        a role without it gets 403 naming the role and the group."""
        self.assertGroup(_INFERENCE, "inference", ("user", "admin"), ("reader", "nothing"))

    def test_catalogue(self) -> None:
        """Model lists and model details are the ``catalogue`` group."""
        self.assertGroup(_CATALOGUE, "catalogue", ("user", "reader", "admin"),
                         ("embedder", "nothing"))

    def test_management(self) -> None:
        """Pulling, pushing, deleting, copying, creating models and blobs are the
        ``management`` group, which roles get only when they say so."""
        self.assertGroup(_MANAGEMENT, "management", ("admin",), ("user", "reader"))

    def test_open_to_every_role(self) -> None:
        """``/`` and ``/api/version`` answer every role, even one given no group."""
        for method, path in (("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"),
                             ("HEAD", "/api/version")):
            with self.subTest(method=method, path=path):
                run = self.serve("nothing", method, path)
                self.assertEqual(run.status, 200)
                self.assertTrue(run.terminal.called)

    def test_unknown_path(self) -> None:
        """A path Ollama does not route (or that gin routes elsewhere: a trailing slash,
        another case, a doubled slash) is 404, not passed through unread."""
        for path in ("/api/unknown", "/api/chat/", "/API/chat", "/api//chat", "/v1/responses",
                     "/v1/models/", "/api/blobs/"):
            with self.subTest(path=path):
                run = self.serve("admin", "POST", path, _MODEL)
                self.assertRefused(run, 404, f"{path} is not an Ollama endpoint served here")
                self.assertEqual(run.exchange.reason, "unknown endpoint")

    def test_escaped_path_read_decoded(self) -> None:
        """An escaped path is checked as Ollama routes it: ``/api/t%61gs`` is ``/api/tags``."""
        run = self.serve("embedder", "GET", "/api/t%61gs")
        self.assertRefused(run, 403,
                           'role "embedder" may not use catalogue endpoints (/api/tags)')

    def test_wrong_method(self) -> None:
        """A method Ollama does not answer on the path is 405 with ``Allow``."""
        for method, path, allow in (("GET", "/api/chat", "POST"),
                                    ("POST", "/api/tags", "GET, HEAD"),
                                    ("POST", "/api/delete", "DELETE"),
                                    ("PUT", "/", "GET, HEAD"),
                                    ("GET", f"/api/blobs/{_SHA}", "HEAD, POST")):
            with self.subTest(method=method, path=path):
                run = self.serve("admin", method, path)
                shown = "/api/blobs/{digest}" if "/blobs/" in path else path
                self.assertRefused(run, 405, f"{method} is not allowed on {shown}")
                self.assertEqual(run.client.header("Allow"), allow)


class ModelTests(_Serving):
    """The role's ``models`` patterns against the model a request names."""

    def test_allowed_model(self) -> None:
        """A model the role's patterns match reaches the runner, body untouched."""
        body = _body(model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}])
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")

    def test_refused_model(self) -> None:
        """Another model is 403 naming the model as asked and the role."""
        run = self.chat("user", _body(model="Mistral", messages=[]))
        self.assertRefused(run, 403, 'model "Mistral" is not available to role "user"')
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("denied", "model mistral:latest not allowed"))

    def test_every_endpoint_naming_a_model(self) -> None:
        """Every endpoint whose body names a model checks it, management ones included."""
        roles = {"user": RoleSettings("user", models=("allowed",),
                                      api=("inference", "catalogue", "management"))}
        for method, path, _ in _INFERENCE + _CATALOGUE + _MANAGEMENT:
            endpoint = endpoint_for(path)
            assert endpoint is not None
            if not endpoint.names_model:
                continue
            with self.subTest(path=path):
                run = self.serve("user", method, path, _body(model="blocked"), roles=roles)
                self.assertRefused(run, 403, 'model "blocked" is not available to role "user"')
                run = self.serve("user", method, path, _body(model="allowed"), roles=roles)
                self.assertEqual((run.status, run.exchange.model), (200, "allowed:latest"))

    def test_names_normalized(self) -> None:
        """A model is matched as Ollama reads its name: any case, default tag, default
        namespace and registry spelled out or not."""
        for model in ("llama3.2", "Llama3.2", "llama3.2:latest", "LLAMA3.2:LATEST",
                      "library/llama3.2", "registry.ollama.ai/library/llama3.2:latest",
                      "https://registry.ollama.ai/library/llama3.2", "llama3.2:local"):
            with self.subTest(model=model):
                body = _body(model=model)
                self.assertPassed(self.chat("plain", body), body, "llama3.2:latest")

    def test_other_names_refused(self) -> None:
        """Another tag, namespace or registry is another model."""
        for model in ("llama3.2:1b", "someone/llama3.2", "hf.co/library/llama3.2",
                      "llama3.2:cloud", "llama3.20"):
            with self.subTest(model=model):
                self.assertRefused(self.chat("plain", _body(model=model)), 403,
                                   f'model "{model}" is not available to role "plain"')

    def test_digest_names_refused(self) -> None:
        """A model given by digest (which the gateway cannot name) or a name Ollama would
        refuse is 400."""
        for model in (_SHA, "llama3.2@" + _SHA, "ollama:sha256-" + "ab" * 32, "abcdef1234",
                      "llama 3.2", "llama3.2:", "a/b/c/d"):
            with self.subTest(model=model):
                run = self.chat("admin", _body(model=model))
                self.assertRefused(run, 400, f'"{model}" is not a model name')
                self.assertEqual(run.exchange.reason, "bad model name")

    def test_model_in_the_path(self) -> None:
        """``/v1/models/{model}`` checks the model the path names."""
        run = self.serve("user", "GET", "/v1/models/llama3.2:1b")
        self.assertEqual(run.status, 200)
        self.assertEqual(run.exchange.model, "llama3.2:1b")
        self.assertRefused(self.serve("user", "GET", "/v1/models/mistral"), 403,
                           'model "mistral" is not available to role "user"')
        self.assertRefused(self.serve("user", "GET", "/v1/models/" + _SHA), 400,
                           f'"{_SHA}" is not a model name')

    def test_escaped_model_in_the_path(self) -> None:
        """The path's model is read decoded, as Ollama reads it."""
        self.assertRefused(self.serve("user", "GET", "/v1/models/mi%73tral"), 403,
                           'model "mistral" is not available to role "user"')

    def test_missing_model(self) -> None:
        """A body naming no model is 400, as Ollama would answer it."""
        for body in (b"{}", _body(model=""), _body(messages=[]), _body(model=None),
                     _body(name="llama3.2:1b")):
            with self.subTest(body=body):
                run = self.chat("user", body)
                self.assertRefused(run, 400, "model is required")
                self.assertEqual(run.exchange.reason, "no model")

    def test_model_not_a_string(self) -> None:
        """A model that is not a string is 400 (Ollama refuses the body)."""
        for body in (b'{"model":5}', b'{"model":["llama3.2:1b"]}', b'{"model":true}'):
            with self.subTest(body=body):
                self.assertRefused(self.chat("user", body), 400, "model must be a string")

    def test_legacy_name_on_show(self) -> None:
        """``/api/show`` reads the older ``name`` when ``model`` is empty, as Ollama does."""
        body = _body(name="llama3.2:1b")
        self.assertPassed(self.chat("user", body, "/api/show"), body, "llama3.2:1b")
        body = _body(model="", name="llama3.2:1b")
        self.assertPassed(self.chat("user", body, "/api/show"), body, "llama3.2:1b")
        self.assertRefused(self.chat("user", _body(name="mistral"), "/api/show"), 403,
                           'model "mistral" is not available to role "user"')

    def test_both_names_on_show(self) -> None:
        """``model`` and ``name`` naming two models is 400: neither is taken on trust."""
        run = self.chat("user", _body(model="llama3.2:1b", name="mistral"), "/api/show")
        self.assertRefused(run, 400, "both model and name are set")
        body = _body(model="llama3.2:1b", name="Llama3.2:1B")
        self.assertPassed(self.chat("user", body, "/api/show"), body, "llama3.2:1b")


class GoReadingTests(_Serving):
    """Bodies Ollama's Go decoder reads otherwise than a naive reader: the model Ollama reads
    is the one checked, and a body the gateway cannot read as Ollama would is refused."""

    def test_duplicate_keys(self) -> None:
        """Of duplicate ``model`` keys the last one counts, as in Go."""
        self.assertRefused(self.chat("user", b'{"model":"llama3.2:1b","model":"mistral"}'),
                           403, 'model "mistral" is not available to role "user"')
        body = b'{"model":"mistral","model":"llama3.2:1b"}'
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")

    def test_key_case(self) -> None:
        """Go matches keys without regard to case: ``MODEL`` and ``Model`` are ``model``."""
        for body in (b'{"MODEL":"mistral"}', b'{"model":"llama3.2:1b","Model":"mistral"}',
                     b'{"mOdEl":"mistral","messages":[]}'):
            with self.subTest(body=body):
                self.assertRefused(self.chat("user", body), 403,
                                   'model "mistral" is not available to role "user"')
        body = b'{"Model":"mistral","MODEL":"llama3.2:1b"}'
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")

    def test_unicode_keys(self) -> None:
        """A key with a character that folds to no ASCII letter is another field to Go (a
        Cyrillic ``е``, a fullwidth ``ｍ``): it neither passes nor blocks a model."""
        for key in ("mod\u0435l", "\uff4dodel"):
            with self.subTest(key=key):
                body = json.dumps({key: "mistral", "model": "llama3.2:1b"}).encode()
                self.assertPassed(self.chat("user", body), body, "llama3.2:1b")
                self.assertRefused(
                    self.chat("user", json.dumps({"model": "mistral", key: "llama3.2:1b"})
                              .encode()),
                    403, 'model "mistral" is not available to role "user"')

    def test_null_after_a_value(self) -> None:
        """A ``null`` leaves a Go string as it was: the model before it is the one read."""
        self.assertRefused(self.chat("user", b'{"model":"mistral","model":null}'), 403,
                           'model "mistral" is not available to role "user"')
        self.assertRefused(self.chat("user", b'{"model":"mistral","MODEL":null}'), 403,
                           'model "mistral" is not available to role "user"')
        body = b'{"model":"llama3.2:1b","Model":null}'
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")

    def test_unreadable_bodies(self) -> None:
        """Bodies Go reads otherwise or refuses are 400, never passed on: bytes that are not
        UTF-8, a lone surrogate escape, NaN, data after the object, anything but one
        object, an empty body."""
        for body, message in (
            (b'{"model":"llama3.2:1b","prompt":"\xff"}', "the request body is not valid UTF-8"),
            (b'{"model":"llama3.2:1b","prompt":"\\ud800"}',
             "the request body has a lone UTF-16 surrogate escape"),
            (b'{"model":"llama3.2:1b","options":{"temperature":NaN}}',
             "NaN and Infinity are not JSON"),
            (b'{"model":"llama3.2:1b"}{"model":"mistral"}',
             "the request body has data after the JSON value"),
            (b'{"model":"llama3.2:1b"} x', "the request body has data after the JSON value"),
            (b'["llama3.2:1b"]', "the request body must be a JSON object"),
            (b'"llama3.2:1b"', "the request body must be a JSON object"),
            (b"null", "the request body must be a JSON object"),
            (b"", "missing request body"),
        ):
            with self.subTest(body=body):
                run = self.chat("user", body)
                self.assertRefused(run, 400, f"invalid request body: {message}")
                self.assertEqual((run.exchange.outcome, run.exchange.reason),
                                 ("refused", "body not readable"))

    def test_syntax_error_message_safe(self) -> None:
        """A malformed body's error names the place, never the body's text."""
        run = self.chat("user", b'{"model":"llama3.2:1b","prompt":"my secret" "x"}')
        self.assertEqual(run.status, 400)
        self.assertFalse(run.terminal.called)
        self.assertNotIn("secret", run.json()["error"])
        self.assertTrue(run.json()["error"].startswith("invalid request body: invalid JSON: "))

    def test_unchanged_body_passed_as_sent(self) -> None:
        """Without a rewrite, the runner gets the client's bytes, spacing and duplicates
        included."""
        body = b'{ "model" : "mistral",\n "stream": false, "model": "llama3.2:1b" }'
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")


class AliasTests(_Serving):
    """A role's ``aliases``: the model Ollama is asked for is the real one."""

    def test_alias_resolved(self) -> None:
        """The runner is asked for the model the alias names; the audit records it."""
        run = self.chat("user", b'{"model":"fast","messages":[],"stream":false}')
        self.assertPassed(run, b'{"messages":[],"stream":false,"model":"llama3.2:1b"}',
                          "llama3.2:1b")

    def test_alias_normalized(self) -> None:
        """An alias is a model name too: any case, ``:latest`` or ``library/`` before it."""
        for model in ("FAST", "fast:latest", "library/fast"):
            with self.subTest(model=model):
                run = self.chat("user", _body(model=model))
                self.assertPassed(run, b'{"model":"llama3.2:1b"}', "llama3.2:1b")

    def test_every_spelling_replaced(self) -> None:
        """Every key Ollama would read as ``model`` gives way to the real model, written
        once: the runner cannot read the alias (or another model) from a leftover key."""
        for body in (b'{"Model":"fast","MODEL":null}', b'{"model":"mistral","Model":"fast"}',
                     b'{"MODEL":"fast","model":null,"prompt":"hi"}'):
            with self.subTest(body=body):
                run = self.chat("user", body)
                self.assertEqual(run.status, 200)
                received = run.terminal.received
                assert received is not None
                keys = [key.lower() for key, _ in decode_object(received)]
                self.assertEqual(keys.count("model"), 1)
                self.assertEqual(_go_model(received, "/api/chat"), "llama3.2:1b")
                self.assertEqual(run.exchange.model, "llama3.2:1b")

    def test_alias_on_show_replaces_name(self) -> None:
        """On ``/api/show`` an alias in the older ``name`` becomes ``model``: Ollama reads
        one model."""
        run = self.chat("user", _body(name="fast", verbose=True), "/api/show")
        self.assertPassed(run, b'{"verbose":true,"model":"llama3.2:1b"}', "llama3.2:1b")

    def test_alias_on_openai_endpoint(self) -> None:
        """OpenAI-style bodies get the real model too."""
        run = self.chat("user", _body(model="fast", messages=[]), "/v1/chat/completions")
        self.assertPassed(run, b'{"messages":[],"model":"llama3.2:1b"}', "llama3.2:1b")

    def test_alias_in_the_path(self) -> None:
        """``/v1/models/{alias}`` asks Ollama for the real model: never for a model of the
        alias's name the role may not see."""
        run = self.serve("user", "GET", "/v1/models/fast")
        self.assertEqual(run.status, 200)
        self.assertEqual((run.exchange.model, run.exchange.upstream_path),
                         ("llama3.2:1b", "/v1/models/llama3.2:1b"))

    def test_alias_to_a_namespaced_model_in_the_path(self) -> None:
        """An alias for a model whose name has a ``/`` cannot be put in
        ``/v1/models/{model}`` (one path segment): 404, never the alias's own name."""
        roles = {"user": RoleSettings("user", models=("hf.co/*",),
                                      aliases={"fast": "hf.co/org/m:q4"})}
        run = self.serve("user", "GET", "/v1/models/fast", roles=roles)
        self.assertRefused(run, 404, 'model "fast" cannot be read by this path')

    def test_alias_to_a_refused_model(self) -> None:
        """An alias naming a model the role's patterns refuse does not open it."""
        roles = {"user": RoleSettings("user", models=("llama3.2:*",),
                                      aliases={"big": "llama3.1:405b"})}
        run = self.serve("user", "POST", "/api/chat", _body(model="big"), roles=roles)
        self.assertRefused(run, 403, 'model "big" is not available to role "user"')
        self.assertEqual(run.exchange.reason, "model llama3.1:405b not allowed")

    def test_real_name_unchanged(self) -> None:
        """A model asked for by its own name is not rewritten."""
        body = _body(model="Llama3.2:1B")
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")


class KeepAliveTests(_Serving):
    """A role's pinned ``keepAlive`` replaces the client's on the endpoints that read it."""

    def test_added(self) -> None:
        """A body without ``keep_alive`` gets the role's."""
        run = self.chat("pinned", _body(model="llama3.2:1b", prompt="hi"), "/api/generate")
        self.assertPassed(run, b'{"model":"llama3.2:1b","prompt":"hi","keep_alive":"5m"}',
                          "llama3.2:1b")

    def test_replaced(self) -> None:
        """The client's ``keep_alive``, however spelled, gives way to the role's, written
        once."""
        for body in (b'{"model":"llama3.2:1b","keep_alive":-1}',
                     b'{"model":"llama3.2:1b","KEEP_ALIVE":"24h"}',
                     b'{"model":"llama3.2:1b","keep_alive":0,"Keep_Alive":"1h"}',
                     '{"model":"llama3.2:1b","\u212aeep_alive":"1h"}'.encode(),
                     '{"model":"llama3.2:1b","\u212aEEP_ALIVE":-1}'.encode()):
            with self.subTest(body=body):
                run = self.chat("pinned", body)
                self.assertPassed(run, b'{"model":"llama3.2:1b","keep_alive":"5m"}',
                                  "llama3.2:1b")

    def test_seconds(self) -> None:
        """A pinned number of seconds is sent as a number (``-1``: kept forever)."""
        run = self.chat("forever", _body(model="llama3.2", keep_alive="1m"), "/api/embed")
        self.assertPassed(run, b'{"model":"llama3.2","keep_alive":-1}', "llama3.2:latest")

    def test_other_keys_kept(self) -> None:
        """The rest of the body is kept as Ollama reads it: a key spelled with ``ſ`` still
        reads as ``stream``."""
        body = '{"model":"llama3.2:1b","\u017ftream":false,"options":{"a":1,"a":2}}'.encode()
        run = self.chat("pinned", body)
        received = run.terminal.received
        assert received is not None
        self.assertEqual(received, '{"model":"llama3.2:1b","\u017ftream":false,'
                                   '"options":{"a":1,"a":2},"keep_alive":"5m"}'.encode())
        self.assertIs(decode_object(received).get("stream"), False)

    def test_with_an_alias(self) -> None:
        """An alias and a pinned ``keep_alive`` both apply."""
        run = self.chat("pinned", b'{"model":"fast","keep_alive":"1h"}')
        self.assertPassed(run, b'{"model":"llama3.2:1b","keep_alive":"5m"}', "llama3.2:1b")

    def test_not_added_where_unread(self) -> None:
        """Endpoints where Ollama reads no ``keep_alive`` (``/api/show``, the OpenAI-style
        ones) get the client's body as sent."""
        for path, model in (("/api/show", "llama3.2:1b"),
                            ("/v1/chat/completions", "llama3.2:1b"),
                            ("/v1/completions", "llama3.2:1b"),
                            ("/v1/embeddings", "nomic-embed-text:latest")):
            with self.subTest(path=path):
                body = _body(model=model, keep_alive="1h")
                self.assertPassed(self.chat("pinned", body, path), body, model)

    def test_not_pinned_without_the_rule(self) -> None:
        """A role without ``keepAlive`` leaves the client's."""
        body = _body(model="llama3.2:1b", keep_alive=-1)
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")


class BodyBoundTests(_Serving):
    """Bodies are read up to the bound, and only where they name a model."""

    max_body_size = 64

    def test_over_the_bound(self) -> None:
        """A body longer than ``maxBodySize`` is 413 before the runner hears of it."""
        body = _body(model="llama3.2:1b", prompt="x" * 64)
        self.assertRefused(self.chat("user", body), 413, "request body larger than 64 bytes")

    def test_chunked_over_the_bound(self) -> None:
        """A chunked body is counted as it comes: 413 too."""
        run = self.serve("user", "POST", "/api/chat", _body(model="llama3.2:1b",
                                                            prompt="x" * 64), chunked=True)
        self.assertRefused(run, 413, "request body larger than 64 bytes")

    def test_at_the_bound(self) -> None:
        """A body of exactly ``maxBodySize`` bytes is read."""
        body = _body(model="llama3.2:1b", prompt="x" * 29)
        self.assertEqual(len(body), 64)
        self.assertPassed(self.chat("user", body), body, "llama3.2:1b")

    def test_bodies_naming_no_model_stream(self) -> None:
        """A body that names no model (a blob upload) is not read, so not bounded here."""
        body = b"GGUF" + bytes(200)
        run = self.serve("admin", "POST", f"/api/blobs/{_SHA}", body)
        self.assertEqual(run.status, 200)
        self.assertEqual(run.terminal.received, body)


_TAGS = {"models": [
    {"name": "llama3.2:1b", "model": "llama3.2:1b", "size": 1},
    {"name": "mistral:latest", "model": "mistral:latest", "size": 2},
    {"name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest", "size": 3},
    {"name": "hf.co/org/llama3.2:q4", "model": "hf.co/org/llama3.2:q4", "size": 4},
]}


class ModelListTests(_Serving):
    """Model lists show only the models the role may use."""

    def test_head_tags_tells_the_filtered_length(self) -> None:
        """``HEAD /api/tags`` tells the length of the role's list, not of the whole one
        (which would say how many models are hidden): the runner is asked for the list."""
        run = self.serve("user", "HEAD", "/api/tags", answer=Answer.json(_TAGS))
        listed = json.dumps({"models": [_TAGS["models"][0], _TAGS["models"][2]]},
                            separators=(",", ":")).encode()
        self.assertEqual((run.status, run.client.length), (200, len(listed)))
        self.assertEqual((run.exchange.method, run.exchange.notes["method"]), ("GET", "HEAD"))

    def test_tags(self) -> None:
        """``/api/tags`` lists the role's models only, every other field kept."""
        run = self.serve("user", "GET", "/api/tags", answer=Answer.json(_TAGS))
        self.assertEqual(run.status, 200)
        self.assertEqual(run.json(), {"models": [_TAGS["models"][0], _TAGS["models"][2]]})
        self.assertEqual(run.client.length, len(run.body))

    def test_ps(self) -> None:
        """``/api/ps`` shows the role's running models only."""
        running = {"models": [{"name": "mistral:latest", "model": "mistral:latest"},
                              {"name": "llama3.2:3b", "model": "llama3.2:3b", "size_vram": 9}]}
        run = self.serve("user", "GET", "/api/ps", answer=Answer.json(running))
        self.assertEqual(run.json(), {"models": [running["models"][1]]})

    def test_openai_models(self) -> None:
        """``/v1/models`` lists the role's models only."""
        listing = {"object": "list", "data": [
            {"id": "llama3.2:1b", "object": "model", "owned_by": "library"},
            {"id": "mistral:latest", "object": "model", "owned_by": "library"}]}
        run = self.serve("user", "GET", "/v1/models", answer=Answer.json(listing))
        self.assertEqual(run.json(), {"object": "list", "data": [listing["data"][0]]})

    def test_every_model_for_a_star(self) -> None:
        """A role allowed ``*`` sees every model."""
        run = self.serve("admin", "GET", "/api/tags", answer=Answer.json(_TAGS))
        self.assertEqual(run.json(), _TAGS)

    def test_unreadable_entries_hidden(self) -> None:
        """Entries without a readable model name are not shown."""
        listing = {"models": ["llama3.2:1b", {"size": 1}, {"name": 5},
                              {"name": "llama3.2@" + _SHA}, {"name": "llama3.2:1b"}]}
        run = self.serve("admin", "GET", "/api/tags", answer=Answer.json(listing))
        self.assertEqual(run.json(), {"models": [{"name": "llama3.2:1b"}]})

    def test_error_passed_untouched(self) -> None:
        """An answer other than 200 reaches the client as the runner sent it."""
        answer = Answer(500, (("Content-Type", "application/json"),),
                        [b'{"error": "no space left"}'])
        run = self.serve("user", "GET", "/api/tags", answer=answer)
        self.assertEqual((run.status, run.body), (500, b'{"error": "no space left"}'))

    def test_not_json(self) -> None:
        """A 200 list that is not JSON (or not an object) is 502, never passed unfiltered."""
        for chunk, message in ((b"<html>", "the runner's model list is not JSON"),
                               (b'[{"name": "mistral:latest"}]',
                                "the runner's model list is not a JSON object")):
            with self.subTest(chunk=chunk):
                run = self.serve("user", "GET", "/api/tags", answer=Answer(chunks=[chunk]))
                self.assertEqual((run.status, run.json()), (502, {"error": message}))
                self.assertEqual(run.exchange.reason, "model list unreadable")

    def test_other_answers_not_read(self) -> None:
        """Answers other than model lists are relayed as they are."""
        answer = Answer.ndjson({"model": "llama3.2:1b", "done": True})
        run = self.serve("user", "POST", "/api/chat", _MODEL, answer=answer)
        self.assertEqual(run.lines(), [{"model": "llama3.2:1b", "done": True}])


class _CollectsBody:
    """A filter asking for the body without reading it."""

    name = "collects"

    def request_headers(self, exchange: Any) -> None:
        exchange.collect_body(1 << 20)


class WithoutRolesTests(_Serving):
    """Without a ``roles`` section (the role filter hands over no rules) nothing changes."""

    def test_nothing_checked(self) -> None:
        """Any endpoint, model and path passes, bodies untouched; answers too."""
        roles: dict[str, RoleSettings] = {}
        chain_roles = {"user": RoleSettings("user", models=("none",), api=(),
                                            keep_alive="5m", aliases={"a": "none"})}
        for method, path, body in (("POST", "/api/pull", _body(model="mistral")),
                                   ("POST", "/api/chat", _body(model="a", keep_alive=1)),
                                   ("GET", "/api/anything", None)):
            with self.subTest(path=path):
                exchange = make_exchange(method, path, body=body, subject="alice")
                run = self.successResultOf(run_filters(
                    [RoleFilter(None, roles), AccessFilter(chain_roles, 8)], exchange))
                self.assertEqual(run.status, 200)
                self.assertEqual(run.terminal.received, body or b"")
                self.assertIsNone(run.exchange.model)
        exchange = make_exchange("GET", "/api/tags", subject="alice")
        run = self.successResultOf(run_filters(
            [RoleFilter(None, roles), AccessFilter(chain_roles, 8)], exchange,
            Answer.json(_TAGS)))
        self.assertEqual(run.json(), _TAGS)

    def test_body_another_filter_reads(self) -> None:
        """A body another filter collected is not judged either, readable or not."""
        chain_roles = {"user": RoleSettings("user", models=("none",))}
        for body in (b'{"model":"mistral"}', b"\xff not json"):
            with self.subTest(body=body):
                exchange = make_exchange("POST", "/api/chat", body=body, subject="alice")
                run = self.successResultOf(run_filters(
                    [_CollectsBody(), RoleFilter(None, {}), AccessFilter(chain_roles, 64)],
                    exchange))
                self.assertEqual(run.status, 200)
                self.assertEqual(run.terminal.received, body)


class FromSettingsTests(SynchronousTestCase):
    """The filter built from the settings, as the loader builds it."""

    def test_built_from_the_sections(self) -> None:
        """It takes the ``roles`` section and ``policy.maxBodySize``."""
        settings = Settings(files=("<test>",), roles=_ROLES,
                            policy=PolicySettings(max_body_size=1234))
        access = filter_from_settings("access", settings=settings)
        self.assertIsInstance(access, AccessFilter)
        self.assertEqual((set(access.roles), access.max_body_size), (set(_ROLES), 1234))
        self.assertEqual(AccessFilter.after_any, ("role",))

    def test_needs_roles(self) -> None:
        """Without a ``roles`` section the filter is refused at load, never a no-op."""
        with self.assertRaises(ConfigErrors) as raised:
            filter_from_settings("access", settings=Settings(files=("<test>",)))
        self.assertEqual([str(error) for error in raised.exception.errors],
                         ["<test>: filters[0]: the access filter needs a roles section"])

    def test_bad_rules_refused(self) -> None:
        """Rules that cannot be applied (given without the loader's checks) are refused,
        naming the role."""
        for rules in (RoleSettings("user", models=("llama 3",)),
                      RoleSettings("user", aliases={"fast": _SHA})):
            with self.subTest(rules=rules):
                settings = Settings(files=("<test>",), roles={"user": rules})
                with self.assertRaises(ConfigErrors) as raised:
                    filter_from_settings("access", settings=settings)
                self.assertTrue(str(raised.exception.errors[0]).startswith(
                    "<test>: filters[0]: roles.user: "))
