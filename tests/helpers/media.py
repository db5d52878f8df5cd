"""Real media for pipeline tests, made with ffmpeg and ImageMagick, and checks on the results.

The tools are required (CI installs them): a missing tool fails the test, it is never skipped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["many_track_audio", "media_info", "png_pixel", "png_size", "sine_wav", "solid_png",
           "striped_png"]

_TOOL_TIMEOUT = 60
_cache: dict[tuple[Any, ...], bytes] = {}


def _run(argv: list[str]) -> bytes:
    done = subprocess.run(argv, capture_output=True, timeout=_TOOL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{argv[0]} failed ({done.returncode}): "
                             f"{done.stderr.decode('utf-8', 'replace')[-2000:]}")
    return done.stdout


def _made(key: tuple[Any, ...], directory: Path, name: str, argv: list[str]) -> bytes:
    """Run ``argv`` (its last item is the output path) once per key and return the file.

    ``directory`` is created either way: tests write their results beside their media.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if key not in _cache:
        path = directory / name
        _run([*argv, str(path)])
        _cache[key] = path.read_bytes()
    return _cache[key]


def sine_wav(directory: Path, seconds: float, *, rate: int = 8000) -> bytes:
    """A mono WAV of a 440 Hz sine lasting ``seconds`` (small: 8 kHz, 16 bit)."""
    return _made(("wav", seconds, rate), directory, f"sine-{seconds:g}.wav", [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:g}:sample_rate={rate}",
        "-ac", "1", "-c:a", "pcm_s16le"])


def many_track_audio(directory: Path, tracks: int, seconds: float) -> bytes:
    """A Matroska file holding ``tracks`` copies of a short sine (ffprobe says a lot on it)."""
    maps = [item for _ in range(tracks) for item in ("-map", "0:a")]
    return _made(("mka", tracks, seconds), directory, f"tracks-{tracks}.mka", [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:g}:sample_rate=8000",
        *maps, "-c:a", "pcm_s16le"])


def solid_png(directory: Path, width: int, height: int, colour: str = "red") -> bytes:
    """A PNG of ``width`` × ``height`` pixels of one colour."""
    return _made(("png", width, height, colour), directory, f"{colour}-{width}x{height}.png",
                 ["convert", "-size", f"{width}x{height}", f"xc:{colour}"])


def striped_png(directory: Path, width: int, height: int) -> bytes:
    """A colourful PNG: a red-to-blue gradient (its grayscale copy is not flat)."""
    return _made(("gradient", width, height), directory, f"gradient-{width}x{height}.png",
                 ["convert", "-size", f"{width}x{height}", "gradient:red-blue"])


def media_info(path: Path) -> dict[str, Any]:
    """ffprobe's view of a file: ``format`` and ``streams``."""
    output = _run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                   "-show_streams", str(path)])
    info: dict[str, Any] = json.loads(output)
    return info


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of an image, as ImageMagick reads them."""
    width, height = _run(["convert", str(path), "-format", "%w %h", "info:"]).split()
    return int(width), int(height)


def png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """The 8-bit RGB colour of one pixel."""
    text = _run(["convert", str(path), "-format", f"%[fx:int(255*p{{{x},{y}}}.r)] "
                 f"%[fx:int(255*p{{{x},{y}}}.g)] %[fx:int(255*p{{{x},{y}}}.b)]", "info:"])
    red, green, blue = (int(part) for part in text.split())
    return red, green, blue
