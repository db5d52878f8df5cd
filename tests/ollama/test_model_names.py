"""Model names normalized as Ollama reads them, and patterns over them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.model_names import ModelPatterns, normalize_model_name

__all__ = ["CloudPatternTests", "ModelPatternsTests", "NormalizeModelNameTests",
           "RefusedModelNameTests", "SourceSuffixTests"]


class NormalizeModelNameTests(SynchronousTestCase):
    """``normalize_model_name``: one form for every way of naming a model."""

    def assertNormal(self, name: str, normal: str) -> None:
        self.assertEqual(normalize_model_name(name), normal)

    def test_default_tag(self) -> None:
        """A name without a tag is ``:latest``."""
        self.assertNormal("llama3.2", "llama3.2:latest")

    def test_case(self) -> None:
        """Names are compared without regard to case: lowercase."""
        self.assertNormal("Llama3.2:1B", "llama3.2:1b")

    def test_default_namespace(self) -> None:
        """``library/`` is the default namespace, left out."""
        self.assertNormal("library/llama3.2:1b", "llama3.2:1b")

    def test_default_host(self) -> None:
        """``registry.ollama.ai/library/`` is the default, left out."""
        self.assertNormal("registry.ollama.ai/library/llama3.2", "llama3.2:latest")

    def test_default_host_other_namespace(self) -> None:
        """On the default host, another namespace stays."""
        self.assertNormal("Registry.Ollama.AI/jmorgan/m:7b", "jmorgan/m:7b")

    def test_namespace(self) -> None:
        """A namespace without host is on the default host."""
        self.assertNormal("jmorgan/m", "jmorgan/m:latest")

    def test_other_host(self) -> None:
        """Another host keeps host and namespace."""
        self.assertNormal("hf.co/bartowski/Llama-GGUF:Q4_K_M", "hf.co/bartowski/llama-gguf:q4_k_m")

    def test_host_with_port(self) -> None:
        """A port in the host is no tag: the tag is after the last ``/``."""
        self.assertNormal("localhost:5000/ns/m", "localhost:5000/ns/m:latest")

    def test_host_with_port_and_tag(self) -> None:
        """A tag after a host with a port."""
        self.assertNormal("localhost:5000/ns/m:q8", "localhost:5000/ns/m:q8")

    def test_scheme(self) -> None:
        """``https://`` before the host is dropped, as Ollama drops it."""
        self.assertNormal("https://registry.ollama.ai/library/llama3", "llama3:latest")

    def test_same_model_same_form(self) -> None:
        """The spellings of one model all have one normal form."""
        names = ("qwen2.5:7b", "QWEN2.5:7b", "library/qwen2.5:7b",
                 "registry.ollama.ai/library/qwen2.5:7B")
        self.assertEqual({normalize_model_name(name) for name in names}, {"qwen2.5:7b"})


class SourceSuffixTests(SynchronousTestCase):
    """The ``:cloud`` and ``:local`` suffixes recent Ollama versions read."""

    def test_cloud_suffix_after_tag(self) -> None:
        """``m:20b:cloud`` is the cloud model Ollama lists as ``m:20b-cloud``."""
        self.assertEqual(normalize_model_name("gpt-oss:20b:cloud"), "gpt-oss:20b-cloud")

    def test_cloud_tag(self) -> None:
        """``m:20b-cloud`` is that same model."""
        self.assertEqual(normalize_model_name("gpt-oss:20B-Cloud"), "gpt-oss:20b-cloud")

    def test_cloud_without_tag(self) -> None:
        """``m:cloud`` stays ``m:cloud``."""
        self.assertEqual(normalize_model_name("gpt-oss:CLOUD"), "gpt-oss:cloud")

    def test_local_suffix(self) -> None:
        """``:local`` asks for the local model: the name without it."""
        self.assertEqual(normalize_model_name("llama3:8b:local"), "llama3:8b")

    def test_both_suffixes(self) -> None:
        """``:cloud`` and ``:local`` together are refused, as Ollama refuses them."""
        self.assertRaises(ValueError, normalize_model_name, "m:cloud:local")


class RefusedModelNameTests(SynchronousTestCase):
    """Names Ollama refuses, or could read as something else than a name."""

    def assertRefused(self, *names: str) -> None:
        for name in names:
            with self.subTest(name=name):
                self.assertRaises(ValueError, normalize_model_name, name)

    def test_empty(self) -> None:
        """An empty name."""
        self.assertRefused("")

    def test_spaces_and_control_characters(self) -> None:
        """Whitespace and control characters anywhere."""
        self.assertRefused(" llama3", "llama3 ", "lla ma3", "llama3\t", "llama3\n", "a\x00")

    def test_non_ascii(self) -> None:
        """Characters beyond ASCII."""
        self.assertRefused("llam\u00e4", "\u212aimi")

    def test_missing_parts(self) -> None:
        """A separator with nothing on one side."""
        self.assertRefused("llama3:", ":8b", "/llama3", "ns/", "a//b")

    def test_too_many_segments(self) -> None:
        """More than host, namespace and model."""
        self.assertRefused("a/b/c/d")

    def test_invalid_characters(self) -> None:
        """Characters Ollama allows in no part."""
        self.assertRefused("llama3!", "ll*ma", "m:t:u", "ns.x/m", "-m")

    def test_too_long(self) -> None:
        """A model or tag of more than 80 characters."""
        self.assertRefused("m" * 81, "m:" + "t" * 81)

    def test_digest_references(self) -> None:
        """Names an Ollama resolving digests could take for a blob's digest."""
        self.assertRefused("m@sha256:" + "a" * 64, "sha256:" + "a" * 64, "SHA256-abc", "sha256",
                           "deadbeef12", "ollama:sha256-abc", "ggml:abcdef")

    def test_short_hex_tag_kept(self) -> None:
        """A hexadecimal tag after a model (not a runner) is a tag."""
        self.assertEqual(normalize_model_name("m:abcdef"), "m:abcdef")


class ModelPatternsTests(SynchronousTestCase):
    """``ModelPatterns``: glob patterns over normal names."""

    def assertAllows(self, patterns: list[str], allowed: list[str], refused: list[str]) -> None:
        matcher = ModelPatterns(patterns)
        for name in allowed:
            with self.subTest(name=name):
                self.assertTrue(matcher.allows(name))
        for name in refused:
            with self.subTest(name=name):
                self.assertFalse(matcher.allows(name))

    def test_star_alone(self) -> None:
        """``*`` matches every model."""
        self.assertAllows(["*"], ["llama3", "hf.co/a/b:c", "ns/m:t"], [])

    def test_any_tag(self) -> None:
        """``m:*`` matches every tag of ``m``, and only of ``m``."""
        self.assertAllows(["llama3.2:*"], ["llama3.2", "llama3.2:1b", "Llama3.2:3B"],
                          ["llama3.1:8b", "llama3.21:1b", "ns/llama3.2:1b"])

    def test_no_tag_means_latest(self) -> None:
        """A pattern without a tag means ``:latest``."""
        self.assertAllows(["mistral"], ["mistral", "mistral:latest"], ["mistral:7b"])

    def test_exact_name(self) -> None:
        """A full name matches that model, however it is spelled."""
        self.assertAllows(["qwen2.5:7b"], ["QWEN2.5:7b", "library/qwen2.5:7b"],
                          ["qwen2.5:14b", "qwen2.5"])

    def test_star_covers_the_tag(self) -> None:
        """A ``*`` in the last segment may stand for the tag: no ``:latest`` is added."""
        self.assertAllows(["llama3*"], ["llama3", "llama3.1:70b"], ["llama2:7b"])

    def test_other_host(self) -> None:
        """``hf.co/*`` matches every model from ``hf.co``."""
        self.assertAllows(["hf.co/*"], ["hf.co/bartowski/m:q4_k_m", "HF.co/a/b"],
                          ["llama3", "hf.com/a/b"])

    def test_library_only(self) -> None:
        """``library/*`` matches the library's models, not other namespaces."""
        self.assertAllows(["library/*"], ["llama3", "registry.ollama.ai/library/m:t"],
                          ["jmorgan/m", "hf.co/a/b"])

    def test_default_host_only(self) -> None:
        """``registry.ollama.ai/*`` matches the default registry's models only."""
        self.assertAllows(["registry.ollama.ai/*"], ["llama3", "jmorgan/m"], ["hf.co/a/b"])

    def test_pattern_case(self) -> None:
        """Patterns ignore case as names do."""
        self.assertAllows(["Llama3.2:*"], ["llama3.2:1b"], [])

    def test_question_mark_and_classes(self) -> None:
        """``?`` and ``[…]`` work as in fnmatch."""
        self.assertAllows(["llama3.[12]:?b"], ["llama3.1:8b", "llama3.2:1b"],
                          ["llama3.3:8b", "llama3.1:70b"])

    def test_cloud_models(self) -> None:
        """A cloud reference is matched under the name Ollama lists it by."""
        self.assertAllows(["*-cloud"], ["gpt-oss:20b:cloud", "gpt-oss:20b-cloud"],
                          ["gpt-oss:20b"])

    def test_several_patterns(self) -> None:
        """A name matching any of the patterns is allowed."""
        self.assertAllows(["llama3.2:*", "qwen2.5:7b"], ["llama3.2:1b", "qwen2.5:7b"],
                          ["qwen2.5:14b"])

    def test_no_patterns(self) -> None:
        """No pattern allows nothing."""
        self.assertAllows([], [], ["llama3"])

    def test_empty_pattern(self) -> None:
        """An empty pattern is a mistake in the settings."""
        self.assertRaises(ValueError, ModelPatterns, ["llama3", ""])

    def test_pattern_with_spaces(self) -> None:
        """A pattern with spaces can match no model: a mistake too."""
        self.assertRaises(ValueError, ModelPatterns, ["llama 3"])

    def test_pattern_of_a_prefix_only(self) -> None:
        """A pattern that is only a default prefix names no model."""
        self.assertRaises(ValueError, ModelPatterns, ["library/"])

    def test_invalid_name_refused(self) -> None:
        """A name Ollama would refuse is not matched but refused, for the filter to answer."""
        self.assertRaises(ValueError, ModelPatterns(["*"]).allows, "sha256:" + "a" * 64)

    def test_patterns_kept(self) -> None:
        """The patterns are kept as given, for messages and equality."""
        self.assertEqual(ModelPatterns(["Llama3", "qwen*"]).patterns, ("Llama3", "qwen*"))
        self.assertEqual(ModelPatterns(["a"]), ModelPatterns(["a"]))


class CloudPatternTests(SynchronousTestCase):
    """Cloud models run on ollama.com: a pattern must say so to give them."""

    def test_tag_wildcard_skips_cloud(self) -> None:
        """``gpt-oss:*`` gives the local tags, not ``gpt-oss:20b-cloud`` nor ``gpt-oss:cloud``."""
        patterns = ModelPatterns(["gpt-oss:*"])
        self.assertTrue(patterns.allows("gpt-oss:20b"))
        self.assertFalse(patterns.allows("gpt-oss:20b-cloud"))
        self.assertFalse(patterns.allows("gpt-oss:20b:cloud"))
        self.assertFalse(patterns.allows("gpt-oss:cloud"))

    def test_everything_skips_cloud(self) -> None:
        """``*`` gives every local model only."""
        self.assertFalse(ModelPatterns(["*"]).allows("qwen3-coder:480b-cloud"))

    def test_cloud_patterns(self) -> None:
        """A pattern naming cloud gives cloud models."""
        self.assertTrue(ModelPatterns(["*-cloud"]).allows("gpt-oss:20b-cloud"))
        self.assertTrue(ModelPatterns(["gpt-oss:*", "gpt-oss:*-cloud"]).allows(
            "gpt-oss:120b-cloud"))
        self.assertTrue(ModelPatterns(["gpt-oss:cloud"]).allows("gpt-oss:cloud"))
