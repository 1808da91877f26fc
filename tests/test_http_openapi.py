"""Every route's responses agree with ``/openapi.json``: schemathesis against the live daemon.

Schemathesis generates requests from the published schema (valid and
boundary values for paths, queries and bodies) and checks each response's
status code, content type, headers and body against what the schema
declares, with the server never answering 5xx. It runs as an administrator
(who may call every route) against a daemon holding a few My Inbox items, once
on SQLite and once on PostgreSQL (the drivers' errors and types differ).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.inbox_env import ADA, InboxEnv, inbox_env, mail

NO_INPUT = {"/healthz", "/readyz", "/metrics"}


class Target:
    def __init__(self, box: InboxEnv) -> None:
        code, out, err = box.cli("agents", "token", ADA)
        assert code == 0, err
        self.headers = {"Authorization": f"Bearer {out.strip()}"}
        self.base_url = f"http://127.0.0.1:{box.http_port}"


@pytest.fixture
def target(tmp_path: Path, db_url: str, start_daemon: Any,
           capsys: pytest.CaptureFixture[str]) -> Iterator[Target]:
    for box in inbox_env(tmp_path, db_url, start_daemon, capsys):
        box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
        for number in range(3):
            box.item(mail("zed@newco.example", f"Item {number}"))
        yield Target(box)


def test_every_response_matches_the_schema(target: Target) -> None:
    """Both generation modes: valid requests, and requests the schema says are invalid."""
    schema = schemathesis.openapi.from_url(f"{target.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    # schemathesis's own pytest plugin does not load under this pytest; hypothesis directly.
    for operation in operations:
        # A route that takes no input has no invalid request to make.
        modes = [GenerationMode.POSITIVE] if operation.path in NO_INPUT else [
            GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        for mode in modes:
            negative = mode is GenerationMode.NEGATIVE

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                headers = target.headers
                # B023 is safe here: check() runs inside this loop iteration, never later.
                if negative and "Authorization" not in (case.headers or {}):  # noqa: B023
                    # The invalid part may be the missing token itself: adding ours back
                    # would turn the request valid and "accepted invalid data" would fail.
                    headers = {}
                case.call_and_validate(base_url=target.base_url, headers=headers)

            check()
