"""Loading the ``models-enabled`` directory: every descriptor in name order, each endpoint
served by one file only, and every problem of every file reported at once."""

from __future__ import annotations

import os

from runnergw.config.errors import ConfigError, Origin
from runnergw.models.reader import read_descriptor
from runnergw.models.types import ModelDescriptor

__all__ = ["load_models"]


def load_models(
    directory: str, *, ffprobe_available: bool
) -> tuple[list[ModelDescriptor], list[ConfigError]]:
    """Read every ``*.json`` descriptor of a directory, in name order.

    Files named ``*.json.example``, hidden files and subdirectories are skipped. A file with
    any problem is left out, and so is a file whose endpoint an earlier file already names.

    Args:
        directory: The ``models-enabled`` directory.
        ffprobe_available: Whether ffprobe can measure media; without it, descriptors with
            role limits are refused.

    Returns:
        The good descriptors, and every problem found (an unreadable directory is one).
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        listing = f"cannot list the models: {e.strerror or e}"
        return [], [ConfigError(Origin(directory), "", listing)]
    models: list[ModelDescriptor] = []
    problems: list[ConfigError] = []
    owners: dict[str, str] = {}
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".json") or name.startswith(".") or not os.path.isfile(path):
            continue
        reading = read_descriptor(path, ffprobe_available=ffprobe_available)
        found = list(reading.problems)
        if reading.endpoint is not None:
            if reading.endpoint in owners:
                found.append(ConfigError(
                    reading.endpoint_origin or Origin(path),
                    "actions.submit.endpoint",
                    f'"{reading.endpoint}" is already the endpoint of {owners[reading.endpoint]}',
                ))
            else:
                owners[reading.endpoint] = path
        problems.extend(found)
        if reading.descriptor is not None and not found:
            models.append(reading.descriptor)
    return models, problems
