"""My Inbox refusals: acting twice, another agent's item, deleting, and two agents racing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.db.tables import ACTIONS, INBOX_ITEMS
from ingestd.errors import AlreadyActed, Forbidden
from ingestd.services import inbox
from tests.inbox_env import ADA, NINA, OMAR, InboxEnv, inbox_env, mail

TABLES = ("tickets", "actions", "attachments", "crm_notes", "users")


@pytest.fixture
def box(tmp_path: Path, db_url: str, start_daemon: Any,
        capsys: pytest.CaptureFixture[str]) -> Iterator[InboxEnv]:
    yield from inbox_env(tmp_path, db_url, start_daemon, capsys)


def _state(box: InboxEnv, item: int) -> tuple[Any, ...]:
    return (box.show(item), *(box.count(t) for t in TABLES))


def _opportunity(box: InboxEnv) -> int:
    return int(box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
               .ticket_id)


def test_acting_twice_is_refused_and_changes_nothing(box: InboxEnv) -> None:
    ticket = _opportunity(box)
    item = box.item(mail("zed@newco.example", "Twice"))
    assert box.cli("inbox", "attach", str(item), "--ticket", str(ticket), "--as", NINA)[0] == 0
    before = _state(box, item)
    for argv in (["attach", "--ticket", str(ticket), "--as", NINA], ["new", "--as", NINA],
                 ["note", "--as", NINA, "--client", "Newco"], ["delete", "--as", ADA]):
        code, out, err = box.cli("inbox", argv[0], str(item), *argv[1:])
        assert (code, out, err) == (65, "", f"ingestd: item {item} is already attached\n")
    assert _state(box, item) == before
    ada = box.actor(ADA)
    with box.engine.begin() as conn, pytest.raises(AlreadyActed) as refused:
        inbox.convert(conn, box.settings, item, ada)
    assert refused.value.current == before[0]
    assert refused.value.current["acted_by"] == NINA


def test_another_agents_item_is_not_found_and_stays_as_it_was(box: InboxEnv) -> None:
    ticket = _opportunity(box)
    item = box.item(mail("zed@newco.example", "Mine"))
    before = _state(box, item)
    for argv in (["attach", "--ticket", str(ticket)], ["new"], ["note", "--client", "Newco"],
                 ["delete"]):
        code, _, err = box.cli("inbox", argv[0], str(item), *argv[1:], "--as", OMAR)
        assert (code, err) == (65, f"ingestd: no inbox item with id {item}\n")
    assert _state(box, item) == before
    # An administrator acts on every agent's items.
    record = box.json("inbox", "attach", str(item), "--ticket", str(ticket), "--as", ADA)
    assert (record["agent_email"], record["acted_by"]) == (NINA, ADA)


def test_only_administrators_delete_and_the_message_stays(box: InboxEnv) -> None:
    item = box.item(mail("zed@newco.example", "Spam?"))
    other = box.item(mail("zed@newco.example", "Keep"))
    before = _state(box, item)
    code, _, err = box.cli("inbox", "delete", str(item), "--as", NINA)
    assert (code, err) == (65, "ingestd: only administrators delete inbox items; "
                               f"{NINA} is not one\n")
    assert _state(box, item) == before
    nina = box.actor(NINA)
    with box.engine.begin() as conn, pytest.raises(Forbidden):
        inbox.delete(conn, item, nina)
    code, out, _ = box.cli("inbox", "delete", str(item), "--as", ADA)
    assert code == 0 and out.startswith(f"item {item} deleted by {ADA}")
    assert (box.show(item)["status"], box.show(item)["acted_by"]) == ("deleted", ADA)
    assert [r["id"] for r in box.json("inbox", "list", "--agent", NINA)] == [other]
    assert [r["id"] for r in box.json("inbox", "list")] == [other]
    assert [r["id"] for r in box.json("inbox", "list", "--status", "deleted")] == [item]
    with box.engine.connect() as conn:
        assert inbox.list_items(conn, visible_to=nina).total == 1
        assert inbox.item_message(conn, item).startswith(b"From: zed@newco.example")


@pytest.mark.parametrize("first,second", [("attach", "new"), ("new", "new"),
                                          ("attach", "attach"), ("new", "attach")])
def test_two_agents_racing_on_one_item_make_exactly_one_winner(
    box: InboxEnv, first: str, second: str
) -> None:
    ticket = _opportunity(box)
    racers = [(first, box.actor(NINA)), (second, box.actor(ADA))]
    for round_number in range(3):
        item = box.item(mail("zed@newco.example", f"Race {round_number}"))
        tickets = box.count("tickets")
        results = _race(box, item, ticket, racers)
        wins = [r for r in results if isinstance(r, dict)]
        losses = [r for r in results if isinstance(r, AlreadyActed)]
        assert (len(wins), len(losses)) == (1, 1), results
        assert losses[0].current == wins[0] == box.show(item)
        inbound_id = box.show(item)["inbound_id"]
        actions = box.rows(ACTIONS, ACTIONS.c.inbound_message_id == inbound_id)
        assert len(actions) == 1 and actions[0].ticket_id == wins[0]["ticket_id"]
        made = 1 if wins[0]["status"] == "converted" else 0
        assert box.count("tickets") == tickets + made
        assert box.rows(INBOX_ITEMS, INBOX_ITEMS.c.id == item)[0].status == wins[0]["status"]


def _race(box: InboxEnv, item: int, ticket: int,
          racers: list[tuple[str, inbox.Actor]]) -> list[Any]:
    """Both actions at once, each in its own transaction on its own connection."""
    start = threading.Barrier(len(racers))
    results: list[Any] = [None] * len(racers)

    def run(index: int, kind: str, actor: inbox.Actor) -> None:
        start.wait(10)
        try:
            with box.engine.begin() as conn:
                if kind == "attach":
                    results[index] = inbox.attach(conn, box.settings, item, ticket, actor)
                else:
                    results[index] = inbox.convert(conn, box.settings, item, actor)
        except Exception as exc:  # the test inspects what each racer ended with
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, kind, actor))
               for i, (kind, actor) in enumerate(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a racer hung"
    return results
