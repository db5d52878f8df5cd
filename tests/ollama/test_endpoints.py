"""Ollama's endpoints, found as its router finds them."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.endpoints import GROUPS, Endpoint, endpoint_for

__all__ = ["EndpointForTests", "EndpointTableTests", "ModelInPathTests"]

_TABLE = {
    "/": ("root", "basic", {"GET", "HEAD"}),
    "/api/version": ("version", "basic", {"GET", "HEAD"}),
    "/api/generate": ("generate", "inference", {"POST"}),
    "/api/chat": ("chat", "inference", {"POST"}),
    "/api/embed": ("embed", "inference", {"POST"}),
    "/api/embeddings": ("embeddings", "inference", {"POST"}),
    "/v1/chat/completions": ("openai_chat", "inference", {"POST"}),
    "/v1/completions": ("openai_completions", "inference", {"POST"}),
    "/v1/embeddings": ("openai_embeddings", "inference", {"POST"}),
    "/api/tags": ("tags", "catalogue", {"GET", "HEAD"}),
    "/api/show": ("show", "catalogue", {"POST"}),
    "/api/ps": ("ps", "catalogue", {"GET"}),
    "/v1/models": ("openai_models", "catalogue", {"GET"}),
    "/v1/models/llama3:8b": ("openai_model", "catalogue", {"GET"}),
    "/api/pull": ("pull", "management", {"POST"}),
    "/api/push": ("push", "management", {"POST"}),
    "/api/delete": ("delete", "management", {"DELETE"}),
    "/api/copy": ("copy", "management", {"POST"}),
    "/api/create": ("create", "management", {"POST"}),
    "/api/blobs/sha256:abc": ("blobs", "management", {"HEAD", "POST"}),
}


def _found(path: str) -> Endpoint:
    endpoint = endpoint_for(path)
    assert endpoint is not None, path
    return endpoint


def _found_kind(kind: str) -> Endpoint:
    [path] = [path for path, (other, *_) in _TABLE.items() if other == kind]
    return _found(path)


class EndpointTableTests(SynchronousTestCase):
    """What each of Ollama's endpoints is."""

    def test_kinds_groups_and_methods(self) -> None:
        """Every route is found with its kind, group and methods."""
        for path, (kind, group, methods) in _TABLE.items():
            with self.subTest(path=path):
                endpoint = _found(path)
                self.assertEqual((endpoint.kind, endpoint.group, endpoint.methods),
                                 (kind, group, methods))

    def test_groups(self) -> None:
        """The groups, from the most harmless to the most powerful."""
        self.assertEqual(GROUPS, ("basic", "inference", "catalogue", "management"))

    def test_openai_style(self) -> None:
        """The ``/v1`` routes are the OpenAI-compatible ones, the others native."""
        for path in _TABLE:
            with self.subTest(path=path):
                self.assertEqual(_found(path).style,
                                 "openai" if path.startswith("/v1/") else "ollama")

    def test_generating(self) -> None:
        """Only generate, chat and their OpenAI forms answer with generated tokens."""
        generating = {kind for kind, *_ in _TABLE.values() if _found_kind(kind).generates}
        self.assertEqual(generating, {"generate", "chat", "openai_chat", "openai_completions"})

    def test_model_lists(self) -> None:
        """Tags, running models and the OpenAI list answer with model lists."""
        listing = {kind for kind, *_ in _TABLE.values() if _found_kind(kind).lists_models}
        self.assertEqual(listing, {"tags", "ps", "openai_models"})

    def test_bodies_naming_a_model(self) -> None:
        """Inference, show and the management endpoints but copy name a model in the body."""
        naming = {kind for kind, *_ in _TABLE.values() if _found_kind(kind).names_model}
        self.assertEqual(naming, {"generate", "chat", "embed", "embeddings", "openai_chat",
                                  "openai_completions", "openai_embeddings", "show", "pull",
                                  "push", "delete", "create"})

    def test_frozen(self) -> None:
        """An endpoint cannot be changed by the filter that holds it."""
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr,
                          _found("/api/chat"), "generates", False)


class EndpointForTests(SynchronousTestCase):
    """``endpoint_for``: exact paths only, as gin matches them."""

    def test_trailing_slash(self) -> None:
        """``/api/chat/`` is not ``/api/chat`` (gin redirects it)."""
        self.assertIsNone(endpoint_for("/api/chat/"))

    def test_case(self) -> None:
        """Paths match case-sensitively."""
        self.assertIsNone(endpoint_for("/API/chat"))

    def test_double_slash(self) -> None:
        """``/api//chat`` is another path."""
        self.assertIsNone(endpoint_for("/api//chat"))

    def test_extra_segment(self) -> None:
        """A segment after a route is another path."""
        self.assertIsNone(endpoint_for("/api/chat/x"))

    def test_unknown(self) -> None:
        """Routes this module does not read are unknown, those that run models included."""
        for path in ("/api/unknown", "/v1/responses", "/v1/messages", ""):
            with self.subTest(path=path):
                self.assertIsNone(endpoint_for(path))

    def test_model_segment_required(self) -> None:
        """``/v1/models/`` names no model: not the model endpoint."""
        self.assertIsNone(endpoint_for("/v1/models/"))

    def test_model_is_one_segment(self) -> None:
        """A model of several segments does not match ``/v1/models/{model}``."""
        self.assertIsNone(endpoint_for("/v1/models/hf.co/user/model"))

    def test_digest_segment_required(self) -> None:
        """``/api/blobs/`` and ``/api/blobs/a/b`` are not the blob endpoint."""
        for path in ("/api/blobs/", "/api/blobs/a/b"):
            with self.subTest(path=path):
                self.assertIsNone(endpoint_for(path))


class ModelInPathTests(SynchronousTestCase):
    """``Endpoint.model_in_path``: the model of ``/v1/models/{model}``."""

    def test_model(self) -> None:
        """The segment after ``/v1/models/`` is the model."""
        path = "/v1/models/llama3:8b"
        self.assertEqual(_found(path).model_in_path(path), "llama3:8b")

    def test_other_endpoints(self) -> None:
        """Other endpoints have no model in their path."""
        self.assertIsNone(_found("/api/chat").model_in_path("/api/chat"))

    def test_path_of_another_endpoint(self) -> None:
        """A path that is not the model endpoint's gives no model."""
        endpoint = _found("/v1/models/x")
        for path in ("/v1/models", "/v1/models/", "/v1/models/a/b"):
            with self.subTest(path=path):
                self.assertIsNone(endpoint.model_in_path(path))
