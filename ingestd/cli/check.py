"""``ingestd check``: validate the configuration and report every problem."""

from __future__ import annotations

import argparse

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, database, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="validate the configuration file")
    add_config_option(parser)
    parser.add_argument("--strict", action="store_true",
                        help="also check the teams and agents rules name against the database")
    parser.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.smtp.tls is not None:
        # What `run` would stop on, found before a restart.
        from ingestd.errors import CertificateUnusable
        from ingestd.intake.smtp_tls import load_server_tls

        try:
            load_server_tls(settings.smtp.tls)
        except CertificateUnusable as exc:
            raise CommandFailed(exits.CONFIG, f"smtp.tls: {exc}") from exc
    if args.strict and settings.rules:
        from ingestd.db.errors import translated
        from ingestd.rules.references import unknown_references

        with database(settings) as engine, translated("check rules"), \
                engine.connect() as conn:
            problems = unknown_references(conn, settings.rules)
        if problems:
            raise CommandFailed(exits.CONFIG, "rules name what the directory lacks:\n"
                                + "\n".join(problems))
    print(
        f"configuration OK: {len(settings.mailboxes)} mailbox(es), "
        f"{len(settings.rules)} rule(s), database {settings.database.url.split('://', 1)[0]}, "
        f"SMTP {settings.smtp.host}:{settings.smtp.port}"
    )
    return exits.OK
