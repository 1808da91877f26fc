"""``ingestd agents token``: issue and revoke agents' bearer tokens for the HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ingestd.cli import exits
from ingestd.cli.common import add_config_option, database, print_json, settings_from

if TYPE_CHECKING:
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Parsers) -> None:
    parser = subparsers.add_parser("agents", help="agents' HTTP API tokens")
    commands = parser.add_subparsers(dest="agents_command", required=True)
    token = commands.add_parser(
        "token", help="issue a bearer token for an agent (printed once), or --revoke its tokens")
    add_config_option(token)
    token.add_argument("email", metavar="EMAIL")
    token.add_argument("--revoke", action="store_true",
                       help="withdraw every token the agent holds instead")
    token.add_argument("--name", metavar="TEXT", help="a label to recognise the token by")
    token.add_argument("--expires-days", type=_days, metavar="N",
                       help="the token stops working N days from now (default: never)")
    token.add_argument("--json", action="store_true")
    token.set_defaults(func=token_command)


# A century: beyond it "never" says the same, and the timestamp stays representable.
_MAX_DAYS = 36_500


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= _MAX_DAYS:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, 1 to {_MAX_DAYS}")
    return days


def token_command(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ingestd.db.errors import translated
    from ingestd.services import agents

    settings = settings_from(args)
    verb = "revoke tokens" if args.revoke else "issue a token"
    with database(settings) as engine, translated(verb), engine.begin() as conn:
        if args.revoke:
            revoked = agents.revoke_tokens(conn, args.email)
        else:
            valid_for = timedelta(days=args.expires_days) if args.expires_days else None
            token, record = agents.issue_token(conn, args.email, args.name, valid_for)
    if args.revoke:
        if args.json:
            print_json({"agent_email": args.email, "revoked": revoked})
        else:
            print(f"revoked {revoked} token(s) of {args.email}")
        return exits.OK
    if args.json:
        print_json({**record, "token": token})
    else:
        print(token)
        until = f", valid until {record['expires_at']}" if record["expires_at"] else ""
        print(f"token {record['id']} for {record['agent_email']}{until}: shown only now; "
              "send it as 'Authorization: Bearer TOKEN'", file=sys.stderr)
    return exits.OK
