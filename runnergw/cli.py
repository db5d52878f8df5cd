"""The ``runnergw`` command: keys, tokens and settings checks (runner-gateway's tool, and more)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from twisted.python.failure import Failure

from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.config.load import config_path_from, load_settings, read_settings
from runnergw.config.reader import parse_go_duration
from runnergw.config.settings import Settings
from runnergw.limits.days import QuotaDays
from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_generation import generate_local_key_hex, write_signing_keypair
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from runnergw.usage.cluster import cluster_totals, format_cluster
from runnergw.usage.report import (
    GROUPINGS,
    format_csv,
    format_json,
    format_table,
    usage_report,
)
from runnergw.usage.schema import LedgerError
from runnergw.websaas.keys import new_server_id, write_rsa_keypair

__all__ = ["main"]

_NODE_PRIVATE_KEY = Path("keys/node_private.pem")
_NODE_PUBLIC_KEY = Path("keys/node_public.pem")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path_from(args.config, os.environ))


def _keygen_rsa(args: argparse.Namespace) -> int:
    default_private, default_public = _NODE_PRIVATE_KEY, _NODE_PUBLIC_KEY
    if Path(config_path_from(args.config, os.environ)).exists():
        pipelines = _settings(args).pipelines
        if pipelines.enabled:
            default_private = Path(pipelines.node_private_key_path)
            default_public = default_private.with_name("node_public.pem")
    private_path = Path(args.private) if args.private else default_private
    public_path = Path(args.public) if args.public else default_public
    return _write_pair(
        lambda: write_rsa_keypair(private_path, public_path, overwrite=args.force),
        private_path, public_path)


def _write_pair(write: Callable[[], None], private_path: Path, public_path: Path) -> int:
    """Run ``write`` and say what happened, as every ``keygen`` kind does."""
    try:
        write()
    except FileExistsError as e:
        print(f"runnergw: {e.filename} exists; use --force to replace it", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"runnergw: {e.filename or private_path}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {private_path} (private, keep it secret) and {public_path}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    if args.kind == "rsa":
        return _keygen_rsa(args)
    if args.private or args.public:
        print("runnergw: --private and --public apply to keygen rsa only", file=sys.stderr)
        return 1
    if args.kind == "symmetric":
        print(generate_local_key_hex())
        return 0
    config = config_path_from(args.config, os.environ)
    key_path = Path(config).parent / "paseto.key"
    pub_path = Path(config).parent / "paseto.pub"
    if Path(config).exists():
        paseto = _settings(args).paseto
        key_path = Path(paseto.key_path or key_path)
        pub_path = Path(paseto.public_paths[0] if paseto.public_paths else pub_path)
    return _write_pair(
        lambda: write_signing_keypair(key_path, pub_path, overwrite=args.force),
        key_path, pub_path)


def _token(args: argparse.Namespace) -> int:
    paseto = _settings(args).paseto
    version = int(paseto.version[1:])
    try:
        if args.purpose == "public":
            if not paseto.key_path:
                print("runnergw: paseto.keyPath is not set", file=sys.stderr)
                return 1
            key = load_signing_key(Path(paseto.key_path).read_bytes(), version)
        else:
            if not paseto.secret_key:
                print("runnergw: paseto.secretKey is not set", file=sys.stderr)
                return 1
            key = parse_local_key(paseto.secret_key, version)
    except OSError as e:
        print(f"runnergw: {paseto.key_path}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyFileError as e:
        print(f"runnergw: paseto key: {e}", file=sys.stderr)
        return 1
    lifetime = parse_go_duration(args.expires) if args.expires else paseto.expiration
    print(mint_token(key, subject=args.sub, role=args.role, lifetime=lifetime,
                     now=time.time(), issuer=paseto.issuer or None,
                     audience=paseto.audience or None))
    return 0


def _saas_token(args: argparse.Namespace) -> int:
    import jwt

    from runnergw.startup import development_saas_key_path
    from runnergw.websaas.keys import RSAKeyError, load_rsa_private_key

    settings = _settings(args)
    path = Path(args.key) if args.key else development_saas_key_path(settings)
    try:
        key = load_rsa_private_key(path.read_bytes())
    except OSError as e:
        print(f"runnergw: {path}: {e.strerror} (the SaaS signs real requests; this command "
              "only uses a development key)", file=sys.stderr)
        return 1
    except RSAKeyError as e:
        print(f"runnergw: {path}: {e}", file=sys.stderr)
        return 1
    now = int(time.time())
    lifetime = int(parse_go_duration(args.expires))
    server = jwt.encode({"iat": now, "exp": now + lifetime}, key, algorithm="RS256")
    user = jwt.encode({"sub": args.sub, "role": args.role, "iat": now, "exp": now + lifetime},
                      key, algorithm="RS256")
    print(f"SERVER_TOKEN={server}")
    print(f"USER_TOKEN={user}")
    return 0


def _server_id(args: argparse.Namespace) -> int:
    print(new_server_id())
    return 0


def _news(found: ConfigErrors, reported: set[str]) -> list[ConfigError]:
    """The problems of ``found`` about settings not ``reported`` yet (nor under them): a bad
    value was read as its default, and what that default points at is not the operator's
    mistake."""
    return [e for e in found.errors
            if not any(e.path == path or e.path.startswith((f"{path}.", f"{path}["))
                       for path in reported)]


def _check(args: argparse.Namespace) -> int:
    """List every problem in one run: settings, keys and certificates, model descriptors.

    Settings with problems are checked further as read (a bad value as its default); what
    follows from a setting already reported (its default key file missing) is left out.
    Routes are built only from settings and keys without problems.
    """
    from twisted.internet import reactor

    from runnergw.routes import build_router
    from runnergw.startup import prepare
    from runnergw.terminals.commands.routes import load_descriptors

    settings, problems = read_settings(config_path_from(args.config, os.environ))
    if settings is None:
        raise ConfigErrors(problems)
    reported = {problem.path for problem in problems if problem.path}
    parts = None
    try:
        parts = prepare(settings)
    except ConfigErrors as e:
        problems.extend(_news(e, reported))
    if parts is None or problems:
        if parts is not None:
            parts.audit_log.close()
        # No route can be built from these: the model descriptors are read on their own.
        load_descriptors(settings, problems)
        raise ConfigErrors(problems)
    try:
        build_router(settings, parts, reactor)
    finally:
        parts.audit_log.close()
    print(f"{' + '.join(settings.files)}: OK ({len(settings.runners)} runners)")
    return 0


def _ledger_path(args: argparse.Namespace) -> str:
    """The ledger to read: ``--ledger``, else ``policy.ledgerPath`` in the settings."""
    if args.ledger:
        return str(args.ledger)
    return str(_settings(args).policy.ledger_path)


def _since(text: str) -> date:
    """``--since``: a date written ``YYYY-MM-DD``, nothing else.

    Raises:
        ValueError: ``text`` is not such a date.
    """
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError(text)
    return date.fromisoformat(text)


def _cluster_usage(args: argparse.Namespace) -> int:
    """Print a day's tokens per subject as every node counted them in Redis."""
    from twisted.internet import reactor

    settings = _settings(args)
    if not settings.limits.shared:
        print("runnergw: --cluster needs limits.backend: redis in the settings",
              file=sys.stderr)
        return 2
    if args.day is not None:
        try:
            day = _since(args.day).isoformat()
        except ValueError:
            print(f"runnergw: --day: expected a date as YYYY-MM-DD, got {args.day!r}",
                  file=sys.stderr)
            return 2
    else:
        day = QuotaDays(settings.policy.zone, reactor).today()
    outcome: list[Any] = []
    read = cluster_totals(settings, day, reactor)
    read.addBoth(outcome.append)
    if not outcome:
        read.addBoth(lambda _: reactor.stop())
        reactor.run()
    if isinstance(outcome[0], Failure):
        print(f"runnergw: cannot read the totals from Redis at {settings.redis.describe()}: "
              f"{outcome[0].getErrorMessage()}", file=sys.stderr)
        return 2
    sys.stdout.write(format_cluster(outcome[0], day, args.format))
    return 0


def _usage(args: argparse.Namespace) -> int:
    """Print the tokens used, per subject, model or day, from the usage ledger."""
    if args.cluster:
        return _cluster_usage(args)
    since = None
    if args.since is not None:
        try:
            since = _since(args.since)
        except ValueError:
            print(f"runnergw: --since: expected a date as YYYY-MM-DD, got {args.since!r}",
                  file=sys.stderr)
            return 2
    try:
        rows = usage_report(_ledger_path(args), since=since, by=args.by)
    except LedgerError as e:
        print(f"runnergw: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(format_json(rows))
    elif args.format == "csv":
        sys.stdout.write(format_csv(rows))
    else:
        sys.stdout.write(format_table(rows, args.by))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runnergw", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    config_help = "settings file (default: $RUNNERGW_CONFIG, else settings/settings.yaml)"

    keygen = commands.add_parser("keygen", help="create keys")
    keygen.add_argument("kind", choices=("asymmetric", "symmetric", "rsa"),
                        help="rsa: the WebSaaS node key pair that signs reply tokens")
    keygen.add_argument("--config", help=config_help)
    keygen.add_argument("--force", action="store_true", help="replace existing key files")
    keygen.add_argument("--private", metavar="PATH",
                        help=f"rsa: private key file (default {_NODE_PRIVATE_KEY})")
    keygen.add_argument("--public", metavar="PATH",
                        help=f"rsa: public key file (default {_NODE_PUBLIC_KEY})")
    keygen.set_defaults(run=_keygen)

    token = commands.add_parser("token", help="mint a PASETO token")
    token.add_argument("purpose", choices=("public", "local"))
    token.add_argument("--config", help=config_help)
    token.add_argument("--sub", help="subject (who the token is for)")
    token.add_argument("--role", help="role claim")
    token.add_argument("--expires", help="lifetime as a Go duration (default paseto.expiration)")
    token.set_defaults(run=_token)

    server_id = commands.add_parser("server-id", help="print a new WebSaaS server id")
    server_id.set_defaults(run=_server_id)

    saas = commands.add_parser(
        "saas-token", help="sign a test server token and user token with a development SaaS key")
    saas.add_argument("--config", help=config_help)
    saas.add_argument("--key", help="SaaS private key (default: the development one)")
    saas.add_argument("--sub", default="developer", help="user subject")
    saas.add_argument("--role", default="pro", help="user role")
    saas.add_argument("--expires", default="1h", help="lifetime as a Go duration")
    saas.set_defaults(run=_saas_token)

    check = commands.add_parser("check", help="validate settings, keys and certificates")
    check.add_argument("--config", help=config_help)
    check.set_defaults(run=_check)

    usage = commands.add_parser("usage", help="report the tokens used, from the usage ledger")
    usage.add_argument("--config", help=config_help)
    usage.add_argument("--ledger", metavar="PATH",
                       help="ledger file (default: policy.ledgerPath in the settings)")
    usage.add_argument("--since", metavar="YYYY-MM-DD", help="from this day on (default: all)")
    usage.add_argument("--by", choices=GROUPINGS, default="subject",
                       help="one row per subject (default), model or day")
    usage.add_argument("--format", choices=("table", "json", "csv"), default="table",
                       help="table (default), a JSON array, or CSV with a header line")
    usage.add_argument("--cluster", action="store_true",
                       help="the day's totals per subject of every node, from Redis")
    usage.add_argument("--day", metavar="YYYY-MM-DD", help="with --cluster (default: today)")
    usage.set_defaults(run=_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigErrors as e:
        print(e, file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"runnergw: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
