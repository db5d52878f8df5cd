"""Find the settings file, lay overlays and environment overrides over it, and read it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runnergw.config.errors import ConfigError, ConfigErrors, Origin
from runnergw.config.reader import ErrorSink, MapReader
from runnergw.config.settings import Settings
from runnergw.config.yamlfile import MarkedMap, load_yaml_file, overlay, set_override

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENVIRONMENT_OVERRIDES",
    "config_path_from",
    "load_settings",
    "read_settings",
]

DEFAULT_CONFIG_PATH = "settings/settings.yaml"

ENVIRONMENT_OVERRIDES: Mapping[str, tuple[str, str]] = {
    # runner-gateway's names first; the rest follow the same SECTION_KEY rule.
    "LOGGING_LEVEL": ("logging", "level"),
    "PASETO_SECRET_KEY": ("paseto", "secretKey"),
    "SERVER_ADDRESS": ("server", "address"),
    "SERVER_CERTIFICATE_PATH": ("server", "certificatePath"),
    "SERVER_KEY_PATH": ("server", "keyPath"),
    "PASETO_VERSION": ("paseto", "version"),
    "PASETO_EXPIRATION": ("paseto", "expiration"),
    "PASETO_KEY_PATH": ("paseto", "keyPath"),
    "PASETO_PUBLIC_PATH": ("paseto", "publicPath"),
    "PASETO_ISSUER": ("paseto", "issuer"),
    "PASETO_AUDIENCE": ("paseto", "audience"),
    "SERVER_READ_TIMEOUT_SECONDS": ("server", "readTimeoutSeconds"),
    "SERVER_WRITE_TIMEOUT_SECONDS": ("server", "writeTimeoutSeconds"),
    "SERVER_ALLOW_PLAINTEXT": ("server", "allowPlaintext"),
    "AUDIT_PATH": ("audit", "path"),
    # The WebSaaS node's names (environment or its .env file).
    "SERVER_ID": ("pipelines", "serverId"),
    "SAAS_PUBLIC_KEY_PATH": ("pipelines", "saasPublicKeyPath"),
    "FASTAPI_PRIVATE_KEY_PATH": ("pipelines", "nodePrivateKeyPath"),
    "PIPELINES_MODELS_PATH": ("pipelines", "modelsPath"),
}


def config_path_from(option: str | None, environ: Mapping[str, str]) -> str:
    """The settings file: ``--config``, else ``RUNNERGW_CONFIG``, else the default."""
    return option or environ.get("RUNNERGW_CONFIG") or DEFAULT_CONFIG_PATH


def _overlay_path(base: str, environ: Mapping[str, str]) -> str | None:
    name = environ.get("GO_ENV") or environ.get("RUNNERGW_ENV")
    if not name:
        return None
    if "/" in name or name.startswith("."):
        raise ConfigError(Origin("environment variable GO_ENV"), "", f'"{name}" is not a name')
    return str(Path(base).parent / f"{name}.yaml")


def read_dotenv(path: str) -> dict[str, tuple[str, Origin]]:
    """The ``NAME=value`` lines of a ``.env`` file (as the WebSaaS node read with
    python-dotenv): comments, blank lines and ``export`` are allowed, quotes are removed."""
    values: dict[str, tuple[str, Origin]] = {}
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return values
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#") or "=" not in text:
            continue
        name, _, value = text.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = (value, Origin(path, number))
    return values


def load_settings(path: str, environ: Mapping[str, str] | None = None,
                  dotenv_path: str | None = ".env") -> Settings:
    """Load settings, collecting every problem.

    ``GO_ENV=my-domain`` lays ``my-domain.yaml`` (beside ``path``) over ``path``, as
    runner-gateway did; the variables in ``ENVIRONMENT_OVERRIDES`` win over both, taken from
    the environment or else from ``dotenv_path`` (the WebSaaS node's ``.env``).

    Raises:
        ConfigErrors: every problem found, each naming its file, YAML path and line.
    """
    settings, errors = read_settings(path, environ, dotenv_path)
    if errors or settings is None:
        raise ConfigErrors(errors)
    return settings


def read_settings(path: str, environ: Mapping[str, str] | None = None,
                  dotenv_path: str | None = ".env") -> tuple[Settings | None, list[ConfigError]]:
    """Read settings as far as they go, as :func:`load_settings` does, without stopping at
    the problems: ``runnergw check`` goes on to the keys and model descriptors with them.

    Returns:
        The settings, a bad value replaced by its default, and every problem found, each
        naming its file, YAML path and line. The settings are None when a file cannot be
        read or parsed (then that is the one problem).
    """
    environ = os.environ if environ is None else environ
    try:
        files = [path]
        data = load_yaml_file(path)
        overlay_file = _overlay_path(path, environ)
        if overlay_file is not None:
            files.append(overlay_file)
            data = overlay(data, load_yaml_file(overlay_file))
    except ConfigError as e:
        return None, [e]
    _apply_environment(data, environ, read_dotenv(dotenv_path) if dotenv_path else {})
    sink = ErrorSink()
    settings = Settings.from_yaml(MapReader(data, "", data.origin, sink), tuple(files))
    return settings, list(sink.errors)


def _apply_environment(data: MarkedMap, environ: Mapping[str, str],
                       dotenv: Mapping[str, tuple[str, Origin]]) -> None:
    for name, dotted in ENVIRONMENT_OVERRIDES.items():
        value = environ.get(name)
        if value is not None:
            set_override(data, dotted, value, Origin(f"environment variable {name}"))
        elif name in dotenv:
            text, origin = dotenv[name]
            set_override(data, dotted, text, origin)
