"""The ``paseto`` section: which tokens the gateway accepts and mints."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from runnergw.config.errors import Origin
from runnergw.config.reader import MapReader

__all__ = ["PasetoSettings"]

_VERSIONS = ("v4", "v2")


@attrs.frozen
class PasetoSettings:
    """Keys and claim checks for PASETO bearer tokens."""

    version: str = "v4"
    """The version minted by ``runnergw token`` and, unless ``versions`` says more, accepted."""
    versions: tuple[str, ...] = ("v4",)
    expiration: float = 8766 * 3600.0
    """Lifetime of tokens minted by ``runnergw token``."""
    key_path: str = ""
    """Ed25519 private key, only needed to mint public tokens."""
    public_paths: tuple[str, ...] = ()
    """Ed25519 public key files that verify ``vN.public`` tokens (several for rotation)."""
    secret_key: str = attrs.field(default="", repr=False)
    """Symmetric key (64 hex characters or a PASERK) for ``vN.local`` tokens."""
    leeway: float = 30.0
    issuer: str = ""
    audience: str = ""
    max_token_bytes: int = 8192
    max_lifetime: float = 0.0
    """Refuse tokens that live longer than this (0: no cap)."""
    cache_size: int = 10000
    origins: Mapping[str, Origin] = attrs.field(factory=dict, eq=False, repr=False)
    """Where ``keyPath``, ``publicPath`` and ``secretKey`` were set, for errors found later."""

    @classmethod
    def from_yaml(cls, section: MapReader) -> PasetoSettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        version = section.choice("version", "v4", _VERSIONS)
        versions = section.string_list("versions", (version,))
        for accepted in versions:
            if accepted not in _VERSIONS:
                section.error("versions", f'unsupported version "{accepted}" (v4 or v2)')
        settings = cls(
            version=version,
            versions=tuple(v for v in versions if v in _VERSIONS) or (version,),
            expiration=section.duration("expiration", defaults.expiration),
            key_path=section.string("keyPath"),
            public_paths=tuple(p for p in section.string_list("publicPath") if p),
            secret_key=section.string("secretKey"),
            leeway=section.duration("leeway", defaults.leeway),
            issuer=section.string("issuer"),
            audience=section.string("audience"),
            max_token_bytes=section.integer("maxTokenBytes", defaults.max_token_bytes, 256, 65536),
            max_lifetime=section.duration("maxLifetime", 0.0),
            cache_size=section.integer("cacheSize", defaults.cache_size, 0),
            origins={
                key: section.origin_of(key) for key in ("keyPath", "publicPath", "secretKey")
            },
        )
        if settings.leeway > 300:
            section.error("leeway", "a leeway over 5m would accept long-expired tokens")
        section.finish()
        return settings

    def path_of(self, key: str) -> str:
        """The YAML path of one of this section's keys."""
        return f"paseto.{key}"
