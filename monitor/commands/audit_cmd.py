"""`radwatch audit verify | export | checkpoint`: check, ship and seal the audit trail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.audit.trail import AuditError
from monitor.commands.arguments import out_file
from monitor.commands.output import add_json_flag, emit, key_values
from monitor.config import Settings
from monitor.store import db

EXIT_OK, EXIT_FINDING = 0, 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "audit",
        help="verify, export or checkpoint the tamper-evident audit trail",
        description="Examples: radwatch audit verify; "
        "radwatch audit export --format fhir --out audit.ndjson --from 2026-11-01; "
        "radwatch audit checkpoint",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    verify = actions.add_parser(
        "verify",
        help="recompute the hash chain and the signed checkpoints (exit 1 when tampered)",
        description="Example: radwatch audit verify --json",
    )
    _key_options(verify)
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_verify)

    export = actions.add_parser(
        "export",
        help="write the trail as FHIR R4 AuditEvent NDJSON or CSV",
        description="Example: radwatch audit export --format fhir --out audit.ndjson "
        "--from 2026-11-01 --to 2026-11-30 (UTC when no offset; a bare --to date is inclusive)",
    )
    export.add_argument("--format", choices=("fhir", "csv"), required=True)
    export.add_argument("--out", type=out_file, required=True, metavar="FILE",
                        help="the file to write; its folder must exist")  # fmt: skip
    export.add_argument("--from", dest="since", metavar="TIME", help="ISO 8601, inclusive")
    export.add_argument("--to", dest="until", metavar="TIME", help="ISO 8601, exclusive")
    export.add_argument("--by", help="who exports (recorded in the trail; default: actor)")
    add_json_flag(export)
    export.set_defaults(handler=_export)

    checkpoint = actions.add_parser(
        "checkpoint",
        help="sign a Merkle root over the rows added since the last checkpoint",
        description="Run it periodically (cron, systemd timer). Example: radwatch audit "
        "checkpoint --key /etc/radwatch/audit-signing.key",
    )
    checkpoint.add_argument("--key", type=Path, help="Ed25519 private key file (created once)")
    checkpoint.add_argument("--checkpoint-file", type=Path, help="JSON-lines file to append to")
    checkpoint.add_argument("--by", help="who seals (recorded in the trail; default: actor)")
    add_json_flag(checkpoint)
    checkpoint.set_defaults(handler=_checkpoint)


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-key", type=Path, help="trusted Ed25519 public key (PEM)")
    parser.add_argument("--checkpoint-file", type=Path,
                        help="the shipped checkpoint file to compare against")  # fmt: skip


def database_url(settings: Settings) -> str:
    """The existing database with a current schema (so an audit trail): only PostgreSQL is
    needed, and nothing is started or migrated (a stopped service or a schema behind is
    one line naming the command to run)."""
    from monitor.services.runtime import resolve_endpoints

    return resolve_endpoints(settings, read_only=True, broker=False).database_url


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    from monitor.config import AuditSettings

    audit = {option: getattr(args, flag, None) or getattr(settings.audit, option)
             for flag, option in (("key", "key_file"), ("public_key", "public_key_file"),
                                  ("checkpoint_file", "checkpoint_file"))}  # fmt: skip
    return settings.replace(audit=AuditSettings(**audit))


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit.verify import verify_configured
    from monitor.errors import UsageError

    settings = _with_overrides(settings, args)
    try:
        with db.connect(database_url(settings)) as conn:
            result = verify_configured(conn, settings)
    except AuditError as exc:
        raise UsageError(str(exc)) from exc
    also = result.findings[1:] if result.first else ()
    emit(result.as_dict(), args.json, indent=2,
         render=lambda _: [result.summary(), *(f"  also: {f.line()}" for f in also)])  # fmt: skip
    if not result.ok:
        assert result.first is not None
        print(f"radwatch: audit trail tampered: {result.first.line()}", file=sys.stderr)
        return EXIT_FINDING
    return EXIT_OK


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit.export import export, parse_time
    from monitor.errors import UsageError

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until, end=True) if args.until else None
    except AuditError as exc:
        raise UsageError(str(exc)) from exc
    if since and until and since >= until:
        raise UsageError("--from must be before --to")
    with db.connect(database_url(settings)) as conn:
        result = export(conn, args.out, fmt=args.format, since=since, until=until,
                        actor=args.by or settings.actor)  # fmt: skip
    doc = {"out": str(result.path), "format": result.format, "rows": result.rows,
           "first_seq": result.first_seq, "last_seq": result.last_seq,
           "sha256": result.sha256}  # fmt: skip
    emit(doc, args.json, lambda d: key_values(d.items(), title="audit trail exported"))
    return EXIT_OK


def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit.checkpoint import create_checkpoint, key_paths
    from monitor.errors import UsageError

    settings = _with_overrides(settings, args)
    try:
        with db.connect(database_url(settings)) as conn:
            checkpoint = create_checkpoint(conn, settings, actor=args.by)
    except AuditError as exc:
        raise UsageError(str(exc)) from exc
    if checkpoint is None:
        doc: dict[str, object] = {"checkpoint": None,
                                  "reason": "no rows since the last checkpoint"}  # fmt: skip
        emit(doc, args.json, lambda d: f"no checkpoint written: {d['reason']}")
        return EXIT_OK
    doc = {"checkpoint": checkpoint.id, "first_seq": checkpoint.first_seq,
           "last_seq": checkpoint.last_seq, "merkle_root": checkpoint.merkle_root,
           "key_id": checkpoint.key_id, "file": str(key_paths(settings).checkpoints)}  # fmt: skip
    emit(doc, args.json, lambda d: key_values(
        [("rows", f"seq {d['first_seq']}..{d['last_seq']}"), ("merkle root", d["merkle_root"]),
         ("signed with key", d["key_id"]), ("appended to", d["file"])],
        title=f"audit checkpoint {d['checkpoint']} signed"))  # fmt: skip
    return EXIT_OK
