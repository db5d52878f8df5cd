"""Measuring an upload with ffprobe: the duration and the widest stream of real media, and
every way ffprobe can fail to say, which the plan limits must not let through."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.jobs import probe
from runnergw.jobs.launcher import JobLauncher
from runnergw.jobs.probe import MediaInfo, ProbeError, probe_media
from tests.helpers.media import sine_wav, solid_png

__all__ = ["FakeProbeTests", "MediaInfoTests", "RealProbeTests"]

_ENVIRONMENT = {"PATH": "/usr/bin:/bin"}


class MediaInfoTests(SynchronousTestCase):
    """What a role limit reads from a measurement."""

    def test_measure_by_attribute(self) -> None:
        """``duration`` is seconds, ``resolution`` the width in pixels."""
        info = MediaInfo(duration=12.5, width=640)
        self.assertEqual((info.measure("duration"), info.measure("resolution")), (12.5, 640))


class _Probing(TestCase):
    """A job launcher and a directory to measure files in."""

    timeout = 30

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        self.launcher = JobLauncher(reactor)
        self.addCleanup(self.launcher.stop)

    async def measure(self, ffprobe: str, name: str) -> MediaInfo:
        return await probe_media(self.launcher, reactor, ffprobe, str(self.directory / name),
                                 str(self.directory), _ENVIRONMENT)


class RealProbeTests(_Probing):
    """The installed ffprobe on media made for the test."""

    async def test_audio_has_a_duration_and_no_width(self) -> None:
        """A 3 s WAV measures 3 s, and has no width to limit."""
        (self.directory / "a.wav").write_bytes(sine_wav(self.directory, 3.0))
        info = await self.measure(shutil.which("ffprobe") or "ffprobe", "a.wav")
        self.assertAlmostEqual(info.duration or 0.0, 3.0, places=2)
        self.assertIsNone(info.width)

    async def test_an_image_has_a_width(self) -> None:
        """A 300 px wide PNG measures 300 px."""
        (self.directory / "i.png").write_bytes(solid_png(self.directory, 300, 20))
        info = await self.measure(shutil.which("ffprobe") or "ffprobe", "i.png")
        self.assertEqual(info.width, 300)

    async def test_a_file_that_is_not_media_is_refused(self) -> None:
        """Text is not media: ffprobe fails, and so does the measurement."""
        (self.directory / "t.wav").write_bytes(b"RIFF but not really")
        with self.assertRaises(ProbeError):
            await self.measure(shutil.which("ffprobe") or "ffprobe", "t.wav")


class FakeProbeTests(_Probing):
    """A stand-in ffprobe that answers what the test wants."""

    def fake(self, body: str) -> str:
        """An executable Python script as ffprobe; it gets ffprobe's arguments."""
        path = self.directory / "ffprobe"
        path.write_text(f"#!{sys.executable} -I\nimport sys, json\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    async def test_the_widest_stream_and_the_duration(self) -> None:
        """Several streams: the widest counts; a stream without width is skipped."""
        ffprobe = self.fake('print(json.dumps({"format": {"duration": "7.25"}, "streams": '
                            '[{"width": 640}, {}, {"width": 1280}]}))')
        self.assertEqual(await self.measure(ffprobe, "x"), MediaInfo(7.25, 1280))

    async def test_unknown_duration(self) -> None:
        """A duration of N/A (a still image) is no duration."""
        ffprobe = self.fake('print(json.dumps({"format": {"duration": "N/A"}, "streams": []}))')
        self.assertEqual(await self.measure(ffprobe, "x"), MediaInfo(None, None))

    async def test_asks_for_the_file_and_only_what_it_measures(self) -> None:
        """ffprobe is asked for the duration and stream widths of the upload, as JSON."""
        ffprobe = self.fake('open("argv", "w").write(json.dumps(sys.argv[1:]))\n'
                            'print("{}")')
        await self.measure(ffprobe, "upload.wav")
        argv = (self.directory / "argv").read_text()
        self.assertIn('"format=duration:stream=width"', argv)
        self.assertTrue(argv.endswith(f'"{self.directory / "upload.wav"}"]'), argv)

    async def test_failure_exit_is_refused(self) -> None:
        """ffprobe exiting non-zero means the file could not be read."""
        ffprobe = self.fake('print("{}"); sys.exit(1)')
        with self.assertRaises(ProbeError):
            await self.measure(ffprobe, "x")

    async def test_output_that_is_not_json_is_refused(self) -> None:
        """An answer that is not JSON is no measurement."""
        ffprobe = self.fake('print("duration=3")')
        with self.assertRaises(ProbeError):
            await self.measure(ffprobe, "x")

    async def test_too_much_output_is_refused(self) -> None:
        """An answer longer than what is kept is refused rather than read cut short."""
        ffprobe = self.fake(f'sys.stdout.write("x" * {probe.PROBE_OUTPUT_LIMIT + 1})')
        with self.assertRaises(ProbeError):
            await self.measure(ffprobe, "x")
