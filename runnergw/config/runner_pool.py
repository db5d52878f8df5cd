"""A runner's hosts (``host`` or ``hosts``) and how requests are spread over them (``pool``)."""

from __future__ import annotations

import attrs

from runnergw.config.reader import MapReader, parse_listen_address

__all__ = ["PoolSettings", "RunnerHost", "read_hosts", "read_pool"]


@attrs.frozen
class RunnerHost:
    """One Ollama server of a runner."""

    host: str
    port: int

    @property
    def netloc(self) -> str:
        """``host:port`` as sent upstream (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.netloc


@attrs.frozen
class PoolSettings:
    """Health and balancing of a runner's hosts (``runners[].pool``)."""

    eject_after: int = 3
    """Consecutive refused or reset connections, or failed health checks, that eject a
    host."""
    eject_for: float = 1.0
    """First ejection's length; each ejection in a row doubles it."""
    max_eject_for: float = 60.0
    """Longest ejection."""
    probe_interval: float = 2.0
    """Once its ejection is over, a host is probed (``GET /api/version``) this often until it
    answers 200; a probe must answer within this time. Without ``affinity``, a healthy host
    is checked the same way this often."""
    affinity: bool = True
    """Prefer a host that has the requested model loaded."""
    ps_interval: float = 5.0
    """With ``affinity``, how often each healthy host is checked and its loaded models read
    (``GET /api/ps``)."""
    affinity_slack: int = 2
    """How many more requests under way than the least busy host a host with the model
    loaded may have and still be preferred."""


def _parse_host(text: str) -> RunnerHost:
    address = parse_listen_address(text)
    if not address.host:
        raise ValueError(f'expected "host:port", got "{text}"')
    return RunnerHost(address.host, address.port)


def read_hosts(section: MapReader) -> tuple[RunnerHost, ...]:
    """``host`` (one server, as runner-gateway wrote it) or ``hosts`` (a list of them):
    exactly one of the two, no host twice."""
    example = '"127.0.0.1:11434"'
    if section.has("host") and section.has("hosts"):
        section.raw("host")
        section.error("hosts", "give either host or hosts, not both")
    if not section.has("hosts"):
        text = section.string("host")
        if not text:
            section.error("host", f'required: the runner\'s "host:port", as {example} '
                                  f"(or hosts: a list of them)")
            return ()
        try:
            return (_parse_host(text),)
        except ValueError as e:
            section.error("host", str(e))
            return ()
    value = section.raw("hosts")
    if not isinstance(value, list):
        section.error("hosts", f'expected a list of "host:port", as [{example}]')
        return ()
    if not value:
        section.error("hosts", "must list at least one host")
        return ()
    origins = getattr(value, "item_origins", None) or [section.origin_of("hosts")] * len(value)
    hosts: list[RunnerHost] = []
    for index, item in enumerate(value):
        path = f"{section.child_path('hosts')}[{index}]"
        try:
            if not isinstance(item, str):
                raise ValueError(f'expected "host:port", got {item!r}')
            host = _parse_host(item)
        except ValueError as e:
            section.sink.add(origins[index], path, str(e))
            continue
        if host in hosts:
            section.sink.add(origins[index], path, f"{host} is listed twice")
            continue
        hosts.append(host)
    return tuple(hosts)


def read_pool(parent: MapReader) -> PoolSettings:
    """The ``pool`` section of a runner, with its defaults; problems go to the sink."""
    section = parent.section("pool")
    defaults = PoolSettings()
    pool = PoolSettings(
        eject_after=section.integer("ejectAfter", defaults.eject_after, 1, 1000),
        eject_for=section.duration("ejectFor", defaults.eject_for),
        max_eject_for=section.duration("maxEjectFor", defaults.max_eject_for),
        probe_interval=section.duration("probeInterval", defaults.probe_interval),
        affinity=section.boolean("affinity", defaults.affinity),
        ps_interval=section.duration("psInterval", defaults.ps_interval),
        affinity_slack=section.integer("affinitySlack", defaults.affinity_slack, 0, 10000),
    )
    for key, value in (("ejectFor", pool.eject_for), ("maxEjectFor", pool.max_eject_for),
                       ("probeInterval", pool.probe_interval),
                       ("psInterval", pool.ps_interval)):
        if section.has(key) and value <= 0:
            section.error(key, "must be longer than zero")
    if pool.max_eject_for < pool.eject_for:
        section.error("maxEjectFor" if section.has("maxEjectFor") else "ejectFor",
                      f"maxEjectFor ({pool.max_eject_for:g}s) is shorter than ejectFor "
                      f"({pool.eject_for:g}s)")
    section.finish()
    return pool
