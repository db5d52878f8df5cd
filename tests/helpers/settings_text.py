"""Read settings text as the loader does, one section at a time, and the problems it finds
rendered as an operator reads them (``settings.yaml:LINE: PATH: message``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.reader import ErrorSink, MapReader
from runnergw.config.yamlfile import load_yaml_file

__all__ = ["load_errors", "read_text"]

T = TypeVar("T")


def read_text(testcase: SynchronousTestCase, text: str,
              read: Callable[[MapReader], T]) -> tuple[T, list[str]]:
    """Write ``text`` as ``settings.yaml``, and ``read`` its top-level mapping.

    Returns what ``read`` returned and every problem recorded, each as
    ``settings.yaml:LINE: PATH: message`` (the temporary directory left out). Keys of the
    top-level mapping that ``read`` did not ask for are not reported.
    """
    directory = Path(testcase.mktemp())
    directory.mkdir(parents=True)
    path = directory / "settings.yaml"
    path.write_text(text)
    data = load_yaml_file(str(path))
    sink = ErrorSink()
    value = read(MapReader(data, "", data.origin, sink))
    return value, [str(error).replace(str(path), "settings.yaml") for error in sink.errors]


def load_errors(testcase: SynchronousTestCase, text: str) -> list[str]:
    """Write ``text`` as ``settings.yaml`` and load it whole, as the gateway does at start:
    every problem found, each as ``settings.yaml:LINE: PATH: message`` (none: loaded)."""
    directory = Path(testcase.mktemp())
    directory.mkdir(parents=True)
    path = directory / "settings.yaml"
    path.write_text(text)
    try:
        load_settings(str(path), environ={}, dotenv_path=None)
    except ConfigErrors as e:
        return [str(error).replace(str(path), "settings.yaml") for error in e.errors]
    return []
