"""Turn settings into working parts (keys, TLS, audit trail), listing every problem at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.logger import Logger

from runnergw.audit_log import AuditLog
from runnergw.config.errors import ConfigError, ConfigErrors, Origin
from runnergw.config.settings import Settings
from runnergw.logs import level_gate
from runnergw.tls import ReloadableServerTLS, TLSConfigError
from runnergw.tokens.keys import (
    KeyFileError,
    load_public_keys,
    parse_local_key,
    write_signing_keypair,
)
from runnergw.tokens.verifier import TokenVerifier
from runnergw.websaas.keys import RSAKeyError, load_rsa_private_key, load_rsa_public_key
from runnergw.websaas.signing import ResponseSigner
from runnergw.websaas.tokens import SaasTokenVerifier

__all__ = ["GatewayParts", "ensure_development_keys", "prepare"]

log = Logger(namespace="runnergw.startup", observer=level_gate)


@attrs.define
class GatewayParts:
    """Loaded keys, TLS and audit trail, ready for the service."""

    verifier: TokenVerifier | None
    tls: ReloadableServerTLS | None
    audit_log: AuditLog
    saas_verifier: SaasTokenVerifier | None = None
    signer: ResponseSigner | None = None


def _origin(settings: Settings, key: str) -> Origin:
    return settings.paseto.origins.get(key, Origin(settings.config_path))


def ensure_development_keys(settings: Settings) -> bool:
    """Create the signing key pair when both files are missing and the gateway is loopback-only.

    A fresh checkout then starts at once; on a public address missing keys stay an error.
    Returns True when keys were written.
    """
    paseto = settings.paseto
    if not paseto.key_path or len(paseto.public_paths) != 1:
        return False
    key_path, pub_path = Path(paseto.key_path), Path(paseto.public_paths[0])
    if key_path.exists() or pub_path.exists() or not settings.server.address.is_loopback():
        return False
    write_signing_keypair(key_path, pub_path)
    log.warn(
        "Created development signing keys {key_path} and {pub_path}. Mint a token with: "
        "runnergw token public --config {config}",
        key_path=str(key_path), pub_path=str(pub_path), config=settings.config_path,
    )
    return True


def _load_verifier(settings: Settings, errors: list[ConfigError],
                   clock: Callable[[], float]) -> TokenVerifier | None:
    paseto = settings.paseto
    public: dict[str, list[Any]] = {}
    local: dict[str, list[Any]] = {}
    for path in paseto.public_paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            errors.append(ConfigError(_origin(settings, "publicPath"), "paseto.publicPath",
                                      f"{path}: cannot read: {e.strerror}"))
            continue
        for version in paseto.versions:
            try:
                public.setdefault(version, []).extend(load_public_keys(data, int(version[1:])))
            except KeyFileError as e:
                errors.append(ConfigError(_origin(settings, "publicPath"), "paseto.publicPath",
                                          f"{path}: {e}"))
                break
    if paseto.secret_key:
        for version in paseto.versions:
            try:
                local[version] = [parse_local_key(paseto.secret_key, int(version[1:]))]
            except KeyFileError as e:
                errors.append(ConfigError(_origin(settings, "secretKey"), "paseto.secretKey",
                                          str(e)))
                break
    if not public and not local:
        return None
    return TokenVerifier(
        versions=paseto.versions,
        local_keys=local,
        public_keys=public,
        leeway=paseto.leeway,
        issuer=paseto.issuer or None,
        audience=paseto.audience or None,
        max_token_bytes=paseto.max_token_bytes,
        max_lifetime=paseto.max_lifetime or None,
        clock=clock,
        cache_size=paseto.cache_size,
    )


def _read_key(path: str, setting: str, origin: Origin, errors: list[ConfigError],
              load: Callable[[bytes], Any]) -> Any:
    try:
        return load(Path(path).read_bytes())
    except OSError as e:
        errors.append(ConfigError(origin, setting, f"{path}: cannot read: {e.strerror}"))
    except RSAKeyError as e:
        errors.append(ConfigError(origin, setting, f"{path}: {e}"))
    return None


def _load_pipeline_keys(settings: Settings, errors: list[ConfigError],
                        clock: Callable[[], float]) -> tuple[Any, Any]:
    pipelines = settings.pipelines
    if not pipelines.enabled:
        return None, None
    origin = pipelines.origin
    public = _read_key(pipelines.saas_public_key_path, "pipelines.saasPublicKeyPath", origin,
                       errors, load_rsa_public_key)
    private = _read_key(pipelines.node_private_key_path, "pipelines.nodePrivateKeyPath",
                        origin, errors, load_rsa_private_key)
    try:
        Path(pipelines.jobs_path).mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        errors.append(ConfigError(origin, "pipelines.jobsPath",
                                  f"{pipelines.jobs_path}: cannot create: {e.strerror}"))
    verifier = signer = None
    if public is not None:
        verifier = SaasTokenVerifier(
            public, max_user_token_age=pipelines.max_user_token_age,
            issuer=pipelines.issuer or None, audience=pipelines.audience or None, clock=clock)
    if private is not None and pipelines.server_id:
        signer = ResponseSigner(private, pipelines.server_id, clock=clock)
    return verifier, signer


def prepare(settings: Settings, clock: Callable[[], float] = time.time) -> GatewayParts:
    """Load everything the settings point at.

    Raises:
        ConfigErrors: every problem (unreadable keys, bad TLS files, unsafe listener…).
    """
    errors: list[ConfigError] = []
    server = settings.server
    refusal = server.plaintext_refusal()
    if refusal is not None:
        errors.append(ConfigError(Origin(settings.config_path), "server.address", refusal))
    verifier = _load_verifier(settings, errors, clock)
    saas_verifier, signer = _load_pipeline_keys(settings, errors, clock)
    uses_tokens = any("token" in runner.filters for runner in settings.runners)
    if verifier is None and uses_tokens and not errors:
        errors.append(ConfigError(_origin(settings, "publicPath"), "paseto",
                                  "the token filter needs paseto.publicPath or paseto.secretKey"))
    tls = None
    if server.tls_enabled:
        try:
            tls = ReloadableServerTLS(server.certificate_path, server.key_path)
        except TLSConfigError as e:
            key = "server.keyPath" if e.path == server.key_path else "server.certificatePath"
            errors.append(ConfigError(Origin(settings.config_path), key, str(e)))
    audit_log = None
    try:
        audit_log = AuditLog(settings.audit.path)
    except OSError as e:
        errors.append(ConfigError(Origin(settings.config_path), "audit.path",
                                  f"{settings.audit.path}: cannot open for appending: "
                                  f"{e.strerror}"))
    if errors:
        if audit_log is not None:
            audit_log.close()
        raise ConfigErrors(errors)
    assert audit_log is not None
    return GatewayParts(verifier=verifier, tls=tls, audit_log=audit_log,
                        saas_verifier=saas_verifier, signer=signer)
