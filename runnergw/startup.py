"""Turn settings into working parts (keys, TLS, audit trail), listing every problem at once."""

from __future__ import annotations

import os
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
from runnergw.tls.certificate_files import TLSConfigError
from runnergw.tls.reloadable import ReloadableServerTLS
from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.verifier import TokenVerifier
from runnergw.websaas.keys import (
    RSAKeyError,
    load_rsa_private_key,
    load_rsa_public_key,
    write_rsa_keypair,
)
from runnergw.websaas.signing import ResponseSigner
from runnergw.websaas.tokens import SaasTokenVerifier

__all__ = ["GatewayParts", "development_saas_key_path", "ensure_development_keys", "prepare"]

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


def development_saas_key_path(settings: Settings) -> Path:
    """Where a development SaaS private key lives: beside the SaaS public key."""
    return Path(settings.pipelines.saas_public_key_path).parent / "saas_dev_private.pem"


def _ensure_development_pipeline_keys(settings: Settings) -> bool:
    pipelines = settings.pipelines
    saas_public = Path(pipelines.saas_public_key_path)
    node_private = Path(pipelines.node_private_key_path)
    if not pipelines.enabled or saas_public.exists() or node_private.exists():
        return False
    write_rsa_keypair(node_private, node_private.with_name("node_public.pem"), bits=2048)
    write_rsa_keypair(development_saas_key_path(settings), saas_public, bits=2048)
    log.warn(
        "Created development WebSaaS keys in {directory}: a stand-in SaaS key pair and the "
        "node key pair. Sign a test request with: runnergw saas-token --config {config}",
        directory=str(saas_public.parent), config=settings.config_path,
    )
    return True


def ensure_development_keys(settings: Settings) -> bool:
    """Create missing keys for a loopback-only gateway, so a fresh checkout starts at once.

    The PASETO signing pair is made when both its files are missing; for pipelines, the node
    key pair and a stand-in SaaS key pair when neither key file exists. On a public address
    missing keys stay an error. Returns True when keys were written.
    """
    if not settings.server.address.is_loopback():
        return False
    made = _ensure_development_pipeline_keys(settings)
    return _ensure_development_paseto_keys(settings) or made


def _ensure_development_paseto_keys(settings: Settings) -> bool:
    paseto = settings.paseto
    if not paseto.key_path or len(paseto.public_paths) != 1:
        return False
    key_path, pub_path = Path(paseto.key_path), Path(paseto.public_paths[0])
    if key_path.exists() or pub_path.exists():
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
                keys = load_public_keys(data, int(version[1:]))
                public.setdefault(version, []).extend(keys)
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
        status = os.stat(pipelines.jobs_path)
    except OSError as e:
        errors.append(ConfigError(origin, "pipelines.jobsPath",
                                  f"{pipelines.jobs_path}: cannot create: {e.strerror}"))
    else:
        if status.st_uid != os.getuid() or status.st_mode & 0o077:
            # Uploads and outputs live there: another user must not read or swap them.
            errors.append(ConfigError(origin, "pipelines.jobsPath",
                                      f"{pipelines.jobs_path}: must belong to this user and "
                                      "be private (mode 0700)"))
    verifier = signer = None
    if public is not None:
        verifier = SaasTokenVerifier(
            public, max_user_token_age=pipelines.max_user_token_age,
            issuer=pipelines.issuer or None, audience=pipelines.audience or None, clock=clock)
    if private is not None and pipelines.server_id:
        signer = ResponseSigner(private, pipelines.server_id, clock=clock)
    return verifier, signer


def _check_ledger_path(settings: Settings, errors: list[ConfigError]) -> None:
    """The usage ledger's file must be one the gateway can create or write: found now, not
    when the service has started (its thread opens it then)."""
    path = Path(settings.policy.ledger_path)
    directory = path.parent
    problem = None
    if not directory.is_dir():
        problem = f"{path}: the directory {directory} does not exist"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem = f"{path}: cannot read and write it"
    elif not path.exists() and not os.access(directory, os.W_OK | os.X_OK):
        problem = f"{path}: cannot create files in {directory}"
    if problem is not None:
        errors.append(ConfigError(settings.policy.origin, "policy.ledgerPath", problem))


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
    tls = None
    if server.tls_enabled:
        try:
            tls = ReloadableServerTLS(server.certificate_path, server.key_path)
        except TLSConfigError as e:
            key = "server.keyPath" if e.path == server.key_path else "server.certificatePath"
            errors.append(ConfigError(Origin(settings.config_path), key, str(e)))
    if settings.roles:
        _check_ledger_path(settings, errors)
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
