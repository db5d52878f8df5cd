"""The ``metrics`` section: where the Prometheus metrics and the health answers are served."""

from __future__ import annotations

from typing import Any

import attrs

from runnergw.config.reader import ListenAddress, MapReader, describe, parse_listen_address

__all__ = ["DEFAULT_METRICS_ADDRESS", "MetricsSettings"]

DEFAULT_METRICS_ADDRESS = ListenAddress("127.0.0.1", 9464)
"""Loopback, on the port OpenTelemetry's Prometheus exporter uses."""

_OFF = ("", "off")


@attrs.frozen
class MetricsSettings:
    """The metrics listener: ``/metrics``, ``/healthz`` and ``/readyz``, unauthenticated."""

    address: ListenAddress | None = DEFAULT_METRICS_ADDRESS
    """None: no metrics listener (``address: ""`` or ``off``)."""

    @property
    def enabled(self) -> bool:
        """True when the listener is to be started."""
        return self.address is not None

    def exposure_warning(self) -> str | None:
        """What the log says when the listener answers more than this machine, or None."""
        if self.address is None or self.address.is_loopback():
            return None
        return (f"metrics.address {self.address} is not a loopback address: /metrics, "
                "/healthz and /readyz answer anyone who can reach it, without a token")

    @classmethod
    def from_yaml(cls, section: MapReader) -> MetricsSettings:
        """Read the section, recording problems in its sink."""
        settings = cls(address=_address(section))
        section.finish()
        return settings


def _address(section: MapReader) -> ListenAddress | None:
    value: Any = section.raw("address")
    if value is None:
        return DEFAULT_METRICS_ADDRESS
    # YAML 1.1 reads a bare ``off`` as false.
    if value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    if not isinstance(value, str):
        section.error("address", f'expected "host:port", "" or off, got {describe(value)}')
        return DEFAULT_METRICS_ADDRESS
    try:
        return parse_listen_address(value.strip())
    except ValueError as e:
        section.error("address", str(e))
        return DEFAULT_METRICS_ADDRESS
