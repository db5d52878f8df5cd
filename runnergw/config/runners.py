"""The ``runners`` list: Ollama servers behind path prefixes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

import attrs

from runnergw.config.errors import Origin
from runnergw.config.filters import FilterSpec, read_filter_specs
from runnergw.config.reader import MapReader
from runnergw.config.runner_pool import PoolSettings, RunnerHost, read_hosts, read_pool

__all__ = ["RewriteSettings", "RunnerHost", "RunnerSettings", "DEFAULT_FILTERS",
           "POLICY_FILTERS", "read_runners"]

DEFAULT_FILTERS = ("token", "role", "rewrite", "audit")
"""A runner's chain when it lists none and no ``roles`` section exists."""

POLICY_FILTERS = ("audit", "token", "role", "access", "rateLimit", "concurrency", "usage",
                  "rewrite")
"""A runner's chain when it lists none and a ``roles`` section exists: the roles' rules.
``audit`` comes first so that its ``done`` runs last (reverse order), once ``usage`` has
settled the counts the audit line carries."""

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FRAMING_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
    "trailer", "upgrade", "expect",
})
"""Headers the gateway itself writes to keep both connections framed correctly."""


def _check_headers(section: MapReader, key: str, names: list[str],
                   values: Mapping[str, str]) -> None:
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            section.error(key, f'"{name}" is not a valid header name')
        elif name.lower() in _FRAMING_HEADERS:
            section.error(key, f'"{name}" is set by the gateway itself and cannot be rewritten')
    for name, value in values.items():
        if any(c in value for c in "\r\n\0"):
            section.error(key, f'the value of "{name}" holds a line break or NUL')


@attrs.frozen
class RewriteSettings:
    """Header changes applied to the request sent upstream and the response sent back."""

    set_headers: Mapping[str, str] = attrs.field(factory=dict)
    remove_headers: tuple[str, ...] = ()
    set_response_headers: Mapping[str, str] = attrs.field(factory=dict)
    remove_response_headers: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, section: MapReader) -> RewriteSettings:
        """Read the section, recording problems in its sink."""
        settings = cls(
            set_headers=section.string_map("setHeaders"),
            remove_headers=section.string_list("removeHeaders"),
            set_response_headers=section.string_map("setResponseHeaders"),
            remove_response_headers=section.string_list("removeResponseHeaders"),
        )
        for key, names, values in (
            ("setHeaders", list(settings.set_headers), settings.set_headers),
            ("removeHeaders", list(settings.remove_headers), {}),
            ("setResponseHeaders", list(settings.set_response_headers),
             settings.set_response_headers),
            ("removeResponseHeaders", list(settings.remove_response_headers), {}),
        ):
            _check_headers(section, key, names, values)
        section.finish()
        return settings


@attrs.frozen
class RunnerSettings:
    """One Ollama server reachable under a path prefix."""

    name: str
    path: str
    """Prefix matched on whole path segments and stripped before forwarding."""
    host: str
    """The first of ``hosts``."""
    port: int
    scheme: str = "http"
    filters: tuple[FilterSpec, ...] = tuple(FilterSpec(name) for name in DEFAULT_FILTERS)
    max_body_size: int = 1 << 30
    connect_timeout: float = 10.0
    first_byte_timeout: float = 300.0
    """Time allowed for the response head after the last request byte (model loads are slow)."""
    idle_timeout: float = 300.0
    """Longest silence allowed inside a streamed response; a long generation is never cut."""
    max_connections: int = 64
    """Persistent connections kept to this runner."""
    ca_path: str = ""
    """CA bundle that verifies an ``https`` runner (empty: the system's trust store)."""
    rewrite: RewriteSettings = attrs.field(factory=RewriteSettings)
    hosts: tuple[RunnerHost, ...] = attrs.field(
        default=attrs.Factory(lambda self: (RunnerHost(self.host, self.port),), takes_self=True))
    """Every Ollama server of the runner (``host`` alone, or ``hosts``)."""
    pool: PoolSettings = attrs.field(factory=PoolSettings)
    yaml_path: str = ""
    origins: Mapping[str, Origin] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def netloc(self) -> str:
        """``host:port`` as sent upstream."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def prefix_segments(self) -> tuple[str, ...]:
        """The prefix split into decoded path segments (``/`` is the empty tuple), as routes
        match request paths."""
        return tuple(unquote(s) for s in self.path.split("/") if s)


def _check_prefix(section: MapReader, path: str) -> str:
    if not path.startswith("/"):
        section.error("path", f'must start with "/", got "{path}"')
        return "/"
    segments = path.split("/")[1:]
    if path != "/" and path.endswith("/"):
        segments = segments[:-1]
    if any(unquote(s) in ("", ".", "..") or "%2f" in s.lower() for s in segments if path != "/"):
        section.error("path", f'"{path}" has empty, dot or encoded-slash segments')
    return "/" + "/".join(segments)


def _read_runner(section: MapReader, index: int,
                 default_filters: tuple[str, ...]) -> RunnerSettings:
    defaults = RunnerSettings(name="", path="/", host="", port=0)
    name = section.string("name") or f"runner{index}"
    path = _check_prefix(section, section.string("path", "/"))
    hosts = read_hosts(section)
    host, port = (hosts[0].host, hosts[0].port) if hosts else ("", 0)
    rewrite = RewriteSettings.from_yaml(section.section("rewrite"))
    settings = RunnerSettings(
        name=name,
        path=path,
        host=host,
        port=port,
        scheme=section.choice("scheme", "http", ("http", "https")),
        filters=read_filter_specs(section, "filters", default_filters),
        max_body_size=section.size("maxBodySize", defaults.max_body_size),
        connect_timeout=section.duration("connectTimeout", defaults.connect_timeout),
        first_byte_timeout=section.duration("firstByteTimeout", defaults.first_byte_timeout),
        idle_timeout=section.duration("idleTimeout", defaults.idle_timeout),
        max_connections=section.integer("maxConnections", defaults.max_connections, 1, 10000),
        ca_path=section.string("caPath"),
        rewrite=rewrite,
        hosts=hosts,
        pool=read_pool(section),
        yaml_path=section.path,
        origins={key: section.origin_of(key) for key in ("filters", "caPath", "path")},
    )
    for key in ("connectTimeout", "firstByteTimeout", "idleTimeout"):
        if section.has(key) and getattr(settings, _snake(key)) <= 0:
            section.error(key, "must be longer than zero")
    section.finish()
    return settings


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def read_runners(root: MapReader,
                 default_filters: tuple[str, ...] = DEFAULT_FILTERS) -> tuple[RunnerSettings, ...]:
    """Read ``runners[]``, refusing two runners on the same prefix; a runner listing no
    filters gets ``default_filters``."""
    runners: list[RunnerSettings] = []
    seen: dict[tuple[str, ...], str] = {}
    for index, section in enumerate(root.sections("runners")):
        runner = _read_runner(section, index, default_filters)
        prefix = runner.prefix_segments  # decoded: "/a" and "/%61" are one prefix
        if prefix in seen:
            section.error("path", f'"{runner.path}" is already the prefix of {seen[prefix]}')
            continue
        seen[prefix] = section.path
        runners.append(runner)
    return tuple(runners)
