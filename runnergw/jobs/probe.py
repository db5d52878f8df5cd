"""Measure an upload with ffprobe (duration in seconds, width in pixels), off the reactor thread."""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
from twisted.internet.interfaces import IReactorTime

from runnergw.jobs.launcher import JobLauncher
from runnergw.jobs.process import start_job

__all__ = ["MediaInfo", "ProbeError", "probe_media"]

PROBE_TIMEOUT = 30.0
PROBE_OUTPUT_LIMIT = 1 << 20
"""Bytes of ffprobe's JSON kept: one entry per stream, and a file may have hundreds."""


class ProbeError(Exception):
    """ffprobe could not read the file."""


@attrs.frozen
class MediaInfo:
    """What the role limits measure."""

    duration: float | None
    width: int | None

    def measure(self, attribute: str) -> float | None:
        """``duration`` (seconds) or ``resolution`` (width in pixels)."""
        return self.duration if attribute == "duration" else self.width


def _parse(output: bytes) -> MediaInfo:
    try:
        data = json.loads(output)
    except ValueError as e:
        raise ProbeError("unreadable ffprobe output") from e
    duration = None
    text = (data.get("format") or {}).get("duration")
    if text not in (None, "N/A"):
        duration = float(text)
    widths = [s.get("width") for s in data.get("streams") or [] if s.get("width")]
    return MediaInfo(duration, max(widths) if widths else None)


async def probe_media(
    launcher: JobLauncher,
    clock: IReactorTime,
    ffprobe: str,
    path: str,
    directory: str,
    environment: Mapping[str, str],
) -> MediaInfo:
    """Run ffprobe on ``path`` as a subprocess.

    Raises:
        ProbeError: ffprobe failed or the file is not media.
    """
    job = await start_job(
        launcher, clock,
        [ffprobe, "-v", "error", "-print_format", "json=compact=1",
         "-show_entries", "format=duration:stream=width", path],
        directory, environment, PROBE_TIMEOUT, PROBE_OUTPUT_LIMIT,
    )
    result = await job.result
    if len(result.stdout_tail) >= PROBE_OUTPUT_LIMIT:
        raise ProbeError("ffprobe said too much")
    if result.exit_code != 0:
        raise ProbeError("ffprobe could not read the file")
    return _parse(result.stdout_tail)
