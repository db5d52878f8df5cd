"""Model names as Ollama reads them, and glob patterns over them.

Ollama reads a model name as ``[host/][namespace/]model[:tag]``, fills in the host
``registry.ollama.ai``, the namespace ``library`` and the tag ``latest``, and compares the
parts without regard to case. The normal form here is the name as Ollama lists it
(``/api/tags``), in lowercase: ``llama3.2:latest``, ``jmorgan/m:7b``,
``hf.co/bartowski/m:q4_k_m``; ``https://`` before a host is dropped, as Ollama drops it.

Recent Ollama versions read a source suffix too: ``:cloud`` or a tag ending in ``-cloud``
runs the model on ollama.com, ``:local`` insists on a local one. A cloud reference is
normalized to the name Ollama pulls and lists it under (``gpt-oss:20b:cloud`` and
``gpt-oss:20b-cloud`` are both ``gpt-oss:20b-cloud``, ``gpt-oss:cloud`` stays so, so
``*-cloud`` and ``*:cloud`` match cloud models); ``:local`` is dropped.

A name Ollama refuses (empty, spaces, characters outside ``A-Z a-z 0-9 _ - .`` and the host's
``:``, a part too long or missing, too many ``/``) raises ValueError, and so does a name that
an Ollama resolving digest references could take for a blob digest rather than a name:
anything with ``@``, ``sha256:…``/``sha256-…``, or six or more hexadecimal digits alone
(also after a runner's name: ``ollama:sha256-…``). A
filter can refuse such a request: Ollama would refuse it, or serve a model the gateway cannot
name.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from typing import Final

import attrs

__all__ = ["ModelPatterns", "normalize_model_name"]

_DEFAULT_HOST: Final = "registry.ollama.ai"
_DEFAULT_NAMESPACE: Final = "library"
_DEFAULT_TAG: Final = "latest"
_MISSING: Final = "!missing!"
"""A part promised by its separator but empty: never valid, as in Ollama."""

_PRINTABLE: Final = re.compile(r"[!-~]+")
_HOST: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL_OR_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_DIGEST_LIKE: Final = re.compile(r"sha256(?:[-:][0-9a-f]*)?|[0-9a-f]{6,}", re.IGNORECASE)
_RUNNERS: Final = frozenset({"ollama", "ggml", "mlx", "mlxrunner", "llamacpp", "llama.cpp",
                             "llama-cpp", "llama_cpp"})
"""The runner names Ollama accepts before a digest reference."""


def normalize_model_name(name: str) -> str:
    """The normal form of the model ``name`` (see the module's notes).

    Raises:
        ValueError: Ollama would refuse the name, or could read it as a digest.
    """
    return _normalized(name)


@functools.lru_cache(maxsize=4096)
def _normalized(name: str) -> str:
    if not name:
        raise ValueError("the model name is empty")
    if not _PRINTABLE.fullmatch(name):
        raise ValueError("a model name is printable ASCII without spaces")
    if "@" in name:
        raise ValueError("a model given by digest is not read by the gateway")
    base = _without_source(name)
    if _names_a_digest(base):
        raise ValueError("a model given by digest is not read by the gateway")
    host, namespace, model, tag = _parts(base)
    if not (_HOST.fullmatch(host) and _NAMESPACE.fullmatch(namespace)
            and _MODEL_OR_TAG.fullmatch(model) and _MODEL_OR_TAG.fullmatch(tag)):
        raise ValueError("the model name is not valid")
    return _shortest(host, namespace, model, tag).lower()


def _split_source(name: str) -> tuple[str, str | None]:
    """``name`` without its source suffix, and the source (``cloud``, ``local`` or None)."""
    index = name.rfind(":")
    if index < 0:
        return name, None
    suffix = name[index + 1:]
    if suffix.lower() in ("cloud", "local"):
        return name[:index], suffix.lower()
    if "/" not in suffix and suffix.lower().endswith("-cloud"):
        return name[:index + 1] + suffix[:-len("-cloud")], "cloud"
    return name, None


def _without_source(name: str) -> str:
    """``name`` with a source suffix read as Ollama reads it: a cloud model under the name it
    is pulled as, ``:local`` dropped."""
    base, source = _split_source(name)
    if source is None:
        return name
    if _split_source(base)[1] is not None:
        raise ValueError("use either :local or :cloud, not both")
    if source == "local":
        return base
    has_tag = base.rfind(":") > base.rfind("/")
    return base + ("-cloud" if has_tag else ":cloud")


def _names_a_digest(base: str) -> bool:
    """Whether a digest reference could be read in ``base``, whole or after the name of one
    of Ollama's runners (``ollama:sha256-…``)."""
    runner, _, rest = base.partition(":")
    if runner.lower() in _RUNNERS and _DIGEST_LIKE.fullmatch(rest):
        return True
    return _DIGEST_LIKE.fullmatch(base) is not None


def _cut_last(text: str, separator: str) -> tuple[str, str] | None:
    index = text.rfind(separator)
    if index < 0:
        return None
    return text[:index] or _MISSING, text[index + 1:] or _MISSING


def _parts(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) as Ollama's ``ParseName`` reads them, defaults filled."""
    host = namespace = tag = ""
    rest = name
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = _cut_last(rest, ":") or (rest, "")
    cut = _cut_last(rest, "/")
    if cut is None:
        model = rest
    else:
        rest, model = cut
        cut = _cut_last(rest, "/")
        if cut is None:
            namespace = rest
        else:
            rest, namespace = cut
            scheme, found, after = rest.partition("://")
            host = after if found else scheme
    return (host or _DEFAULT_HOST, namespace or _DEFAULT_NAMESPACE, model, tag or _DEFAULT_TAG)


def _shortest(host: str, namespace: str, model: str, tag: str) -> str:
    """The name as Ollama displays it: default host and namespace left out."""
    if host.lower() != _DEFAULT_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace.lower() != _DEFAULT_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


_LIBRARY_ONLY: Final = r"(?!.*/)"
"""No ``/`` in the name: a model of the default registry's ``library``."""
_DEFAULT_HOST_ONLY: Final = r"(?!(?:[^/]*/){2})"
"""At most one ``/`` in the name: a model of the default registry."""


def _pattern_regex(pattern: str) -> str:
    """The regular expression of one glob pattern, normalized as names are."""
    if not pattern or not _PRINTABLE.fullmatch(pattern):
        raise ValueError("a model pattern is printable ASCII without spaces, and not empty")
    glob = _without_source(pattern.lower())
    for scheme in ("http://", "https://"):
        glob = glob.removeprefix(scheme)
    scope = ""
    if glob.startswith(_DEFAULT_HOST + "/"):
        glob, scope = glob[len(_DEFAULT_HOST) + 1:], _DEFAULT_HOST_ONLY
    if glob.startswith(_DEFAULT_NAMESPACE + "/"):
        glob, scope = glob[len(_DEFAULT_NAMESPACE) + 1:], _LIBRARY_ONLY
    if not glob:
        raise ValueError("a model pattern names no model")
    last = glob.rpartition("/")[2]
    if ":" not in last and "*" not in last:
        glob += ":" + _DEFAULT_TAG
    return scope + fnmatch.translate(glob)


@attrs.frozen(init=False)
class ModelPatterns:
    """Glob patterns over model names (``*``, ``?``, ``[…]`` as in :mod:`fnmatch`).

    A pattern is normalized as a name is: lowercase, ``registry.ollama.ai/`` and ``library/``
    left out (then matching only models of that registry, or of its library), and a pattern
    without a tag meaning ``:latest``, unless a ``*`` after its last ``/`` may stand for the
    tag. ``*`` alone matches every model, ``llama3.2:*`` every tag of ``llama3.2``,
    ``llama3*`` every tag of every ``llama3…``, ``*-cloud`` every cloud model, ``hf.co/*``
    every model from ``hf.co``, ``library/*`` the library's models only.

    Cloud models (``…-cloud``, ``…:cloud``: they run on ollama.com, not on this box) are
    matched only by patterns that say ``cloud``: ``gpt-oss:*`` does not give
    ``gpt-oss:20b-cloud``, ``gpt-oss:*-cloud`` or ``*-cloud`` do.
    """

    patterns: tuple[str, ...]
    """The patterns as given."""
    _regex: re.Pattern[str] = attrs.field(eq=False, repr=False)
    _cloud_regex: re.Pattern[str] = attrs.field(eq=False, repr=False)

    def __init__(self, patterns: Iterable[str]) -> None:
        """Compile ``patterns`` into one regular expression.

        Raises:
            ValueError: a pattern is empty, or has spaces or characters beyond ASCII.
        """
        given = tuple(patterns)
        source = "|".join(_pattern_regex(pattern) for pattern in given) or "(?!)"
        cloud = "|".join(_pattern_regex(pattern) for pattern in given
                         if "cloud" in pattern.lower()) or "(?!)"
        self.__attrs_init__(given, re.compile(source, re.IGNORECASE),
                            re.compile(cloud, re.IGNORECASE))

    def allows(self, name: str) -> bool:
        """Whether a pattern matches the model ``name`` (normalized first).

        Raises:
            ValueError: the name is one :func:`normalize_model_name` refuses.
        """
        normal = normalize_model_name(name)
        cloud = normal.endswith(("-cloud", ":cloud"))
        regex = self._cloud_regex if cloud else self._regex
        return regex.match(normal) is not None
