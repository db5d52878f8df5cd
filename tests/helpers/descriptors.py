"""Model descriptor files for the reader tests: a small valid document to change, the WebSaaS
reference samples, a place to write them, and what a problem says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runnergw.config.errors import ConfigError
from tests.helpers.reference import reference_file

__all__ = ["MB", "DescriptorFiles", "echo_descriptor", "said", "sample"]

MB = 1024 * 1024
"""A descriptor's ``maxSize`` unit."""


def sample(name: str) -> Path:
    """A reference descriptor (skips when absent)."""
    return reference_file("websaas", "models-enabled", name)


def echo_descriptor(**changes: Any) -> dict[str, Any]:
    """A small valid descriptor, with changes; a None value drops the key."""
    content: dict[str, Any] = {
        "title": "Echo",
        "command": "tool -i <media> --gain=<gain> <out>",
        "actions": {"submit": {"method": "POST", "endpoint": "https://h:20400/process-echo/"}},
        "fields": [
            {"id": "media", "type": "fileUpload", "required": True, "maxSize": 1},
            {"id": "gain", "type": "number", "min": -1, "max": 1, "default": 0},
        ],
        "output": [{"id": "out", "type": "audio", "format": "mp3"}],
    }
    for key, value in changes.items():
        if value is None:
            content.pop(key, None)
        else:
            content[key] = value
    return content


def said(error: ConfigError) -> str:
    """What a problem says after its place: ``fields[2].min: must be a number``."""
    return f"{error.path}: {error.message}" if error.path else error.message


class DescriptorFiles:
    """Mixed into a test case: write descriptor files in a fresh directory."""

    mktemp: Any

    def directory(self) -> Path:
        """A new empty directory."""
        path = Path(self.mktemp())
        path.mkdir(parents=True)
        return path

    def write(self, content: dict[str, Any] | str, name: str = "model.json",
              directory: Path | None = None) -> str:
        """Write ``content`` (a document, or raw text) as ``name``; returns its path."""
        directory = directory or self.directory()
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        path = directory / name
        path.write_text(text, encoding="utf-8")
        return str(path)
