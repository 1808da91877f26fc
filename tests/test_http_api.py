"""The daemon's HTTP API over a real socket: tokens, My Inbox routes, health and readiness."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ingestd.db.tables import ACTIONS, API_TOKENS, ATTACHMENTS, CRM_NOTES, TICKETS
from ingestd.http.raw_message import MAX_RAW_DOWNLOADS, RAW_DOWNLOADS
from ingestd.services.inbox import ITEM_KEYS
from tests.inbox_env import ADA, NINA, OMAR, PDF, InboxEnv, inbox_env, mail


class Api:
    """An HTTP client for the running daemon, with one token per agent (issued by the CLI)."""

    def __init__(self, box: InboxEnv) -> None:
        assert box.http_port
        self.box = box
        self.base = f"http://127.0.0.1:{box.http_port}"
        self.client = httpx.Client(base_url=self.base, timeout=30)
        self.tokens = {agent: self.issue(agent) for agent in (NINA, OMAR, ADA)}

    def issue(self, agent: str) -> str:
        code, out, err = self.box.cli("agents", "token", agent)
        assert code == 0, err
        token = out.strip()
        assert token.startswith("ingestd_") and "shown only now" in err
        return token

    def call(self, method: str, path: str, agent: str | None = None, *,
             token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        bearer = token if token is not None else self.tokens.get(agent or "")
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def api(tmp_path: Path, db_url: str, start_daemon: Any,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Api]:
    for box in inbox_env(tmp_path, db_url, start_daemon, capsys):
        client = Api(box)
        yield client
        client.client.close()


def _opportunity(box: InboxEnv) -> int:
    return int(box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
               .ticket_id)


def test_health_readiness_and_schema_need_no_token(api: Api) -> None:
    assert api.call("GET", "/healthz").json() == {"status": "ok"}
    ready = api.call("GET", "/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and set(body["checks"]) == {"database", "smtp"}
    assert all(check["ok"] for check in body["checks"].values())
    assert str(api.box.processing.port) in body["checks"]["smtp"]["detail"]
    paths = api.call("GET", "/openapi.json").json()["paths"]
    assert {"/api/inbox", "/api/inbox/{item_id}", "/api/inbox/{item_id}/raw",
            "/api/inbox/{item_id}/attach", "/api/inbox/{item_id}/new",
            "/api/inbox/{item_id}/note", "/healthz", "/readyz"} <= set(paths)


def test_no_token_a_bad_one_and_a_revoked_one_are_401(api: Api) -> None:
    item = api.box.item(mail("zed@newco.example", "Pricing?"))
    for token in (None, "ingestd_not-a-token", "x" * 5000, "ingestd_\u00e9\u00ff"):
        for method, path in (("GET", "/api/inbox"), ("GET", f"/api/inbox/{item}"),
                             ("POST", f"/api/inbox/{item}/new"),
                             ("DELETE", f"/api/inbox/{item}")):
            headers = {} if token is None else {
                "Authorization": f"Bearer {token}".encode("latin-1", "replace")}
            response = api.client.request(method, path, headers=headers)
            assert response.status_code == 401, (token, method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    for header in (f"Basic {api.tokens[NINA]}", "Bearer", api.tokens[NINA]):
        assert api.client.get("/api/inbox", headers={"Authorization": header}).status_code == 401
    assert api.box.show(item)["status"] == "open"

    # Only the hash is stored; revoking withdraws every token of that agent, no one else's.
    with api.box.engine.connect() as conn:
        stored = [r.token_sha256 for r in conn.execute(sa.select(API_TOKENS))]
    assert len(stored) == 3 and not set(stored) & set(api.tokens.values())
    second = api.issue(NINA)
    assert api.call("GET", "/api/inbox", token=second).status_code == 200
    code, out, _ = api.box.cli("agents", "token", NINA, "--revoke")
    assert (code, out) == (0, f"revoked 2 token(s) of {NINA}\n")
    assert api.call("GET", "/api/inbox", NINA).status_code == 401
    assert api.call("GET", "/api/inbox", token=second).status_code == 401
    assert api.call("GET", "/api/inbox", OMAR).status_code == 200
    fresh = api.issue(NINA)
    assert api.call("GET", "/api/inbox", token=fresh).status_code == 200


def test_a_token_issued_with_expires_days_stops_working_when_it_expires(api: Api) -> None:
    before = datetime.now(UTC)
    code, out, err = api.box.cli("agents", "token", NINA, "--expires-days", "2", "--json")
    assert code == 0, err
    record = json.loads(out)
    expires_at = datetime.fromisoformat(record["expires_at"])
    assert before + timedelta(days=2) <= expires_at <= datetime.now(UTC) + timedelta(days=2)
    token = record["token"]
    assert api.call("GET", "/api/inbox", token=token).status_code == 200
    code, _, err = api.box.cli("agents", "token", NINA, "--expires-days", "2")
    assert code == 0 and ", valid until 20" in err, err

    with api.box.engine.begin() as conn:
        conn.execute(sa.update(API_TOKENS).where(API_TOKENS.c.id == record["id"])
                     .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = api.call("GET", "/api/inbox", token=token)
    assert expired.status_code == 401 and expired.headers["www-authenticate"] == "Bearer"
    # The agent's other tokens, issued without an expiry, are untouched.
    assert api.call("GET", "/api/inbox", NINA).status_code == 200
    for days in ("0", "-1", "x", "36501"):
        code, _, err = api.box.cli("agents", "token", NINA, "--expires-days", days)
        assert code == 64 and "expected a whole number of days, 1 to 36500" in err, err


def test_tokens_for_unknown_or_inactive_agents(api: Api) -> None:
    code, _, err = api.box.cli("agents", "token", "nobody@example.com")
    assert (code, err) == (65, "ingestd: no active agent with address nobody@example.com\n")
    with api.box.engine.begin() as conn:
        conn.execute(sa.text("UPDATE agents SET active = false WHERE email = :e"), {"e": OMAR})
    assert api.call("GET", "/api/inbox", OMAR).status_code == 401


def test_each_agent_sees_its_own_items_and_administrators_all(api: Api) -> None:
    box = api.box
    ninas = box.item(mail("Zed <zed@newco.example>", "Pricing?"))
    omars = box.item(mail("bob@else.example", "Demo"), "omar-sales")
    listed = api.call("GET", "/api/inbox", NINA).json()
    assert listed["total"] == 1 and listed["truncated"] is False
    assert [tuple(r) for r in listed["items"]] == [ITEM_KEYS]
    # The same record as `ingestd inbox show --json`.
    assert listed["items"][0] == box.json("inbox", "show", str(ninas))
    assert [r["id"] for r in api.call("GET", "/api/inbox", OMAR).json()["items"]] == [omars]
    everyone = api.call("GET", "/api/inbox", ADA, params={"limit": 1}).json()
    assert (everyone["total"], everyone["truncated"]) == (2, True)
    assert [r["id"] for r in everyone["items"]] == [omars]
    assert api.call("GET", "/api/inbox", NINA, params={"status": "attached"}).json()[
        "items"] == []
    assert api.call("GET", "/api/inbox", NINA, params={"status": "bogus"}).status_code == 422

    assert api.call("GET", f"/api/inbox/{ninas}", NINA).json()["id"] == ninas
    assert api.call("GET", f"/api/inbox/{ninas}", ADA).status_code == 200
    # Another agent's item is not found, exactly like one that does not exist.
    hidden = api.call("GET", f"/api/inbox/{ninas}", OMAR)
    missing = api.call("GET", "/api/inbox/999999", OMAR)
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["detail"] == f"no inbox item with id {ninas}"
    assert api.call("GET", f"/api/inbox/{ninas}/raw", OMAR).status_code == 404


def test_raw_is_the_stored_message_byte_exact(api: Api) -> None:
    raw = mail("zed@newco.example", "Bytes", body="Caf\u00e9 \u2014 line\r\n.dot line")
    item = api.box.item(raw)
    response = api.call("GET", f"/api/inbox/{item}/raw", NINA)
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content == raw


def test_a_large_message_arrives_whole_in_slices(api: Api) -> None:
    line = "0123456789abcdef" * 4 + "\r\n"
    raw = mail("zed@newco.example", "Large", body=line * 9000)  # ~600 KB: three slices
    item = api.box.item(raw)
    response = api.call("GET", f"/api/inbox/{item}/raw", NINA)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(raw))
    assert response.content == raw


def test_raw_downloads_beyond_the_cap_get_503_and_every_one_frees_its_slot(api: Api) -> None:
    item = api.box.item(mail("zed@newco.example", "Busy"))
    held = 0
    try:
        while RAW_DOWNLOADS.acquire(blocking=False):  # downloads under way elsewhere
            held += 1
        assert held == MAX_RAW_DOWNLOADS
        busy = api.call("GET", f"/api/inbox/{item}/raw", NINA)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json() == {"detail": "too many message downloads at once; try again shortly"}
        # Other routes are not held back by it.
        assert api.call("GET", f"/api/inbox/{item}", NINA).status_code == 200
        RAW_DOWNLOADS.release()
        held -= 1
        # One free slot serves any number in turn: sent, refused or missing, each gives it back.
        for _ in range(2 * MAX_RAW_DOWNLOADS):
            assert api.call("GET", f"/api/inbox/{item}/raw", NINA).status_code == 200
            assert api.call("GET", f"/api/inbox/{item}/raw", OMAR).status_code == 404
            assert api.call("GET", "/api/inbox/999999/raw", NINA).status_code == 404
    finally:
        for _ in range(held):
            RAW_DOWNLOADS.release()


def test_attach_new_and_note_make_what_the_cli_makes(api: Api) -> None:
    box = api.box
    ticket = _opportunity(box)
    attached = box.item(mail("zed@newco.example", "Re: Quote"))
    response = api.call("POST", f"/api/inbox/{attached}/attach", NINA, json={"ticket_id": ticket})
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["status"], record["ticket_id"], record["acted_by"]) == (
        "attached", ticket, NINA)
    actions = box.rows(ACTIONS, ACTIONS.c.inbound_message_id == record["inbound_id"])
    assert [a.ticket_id for a in actions] == [ticket]
    files = box.rows(ATTACHMENTS, ATTACHMENTS.c.action_id == actions[0].id)
    assert [(f.filename, bytes(f.content)) for f in files] == [("quote.pdf", PDF)]

    converted = box.item(mail("zed@newco.example", "Seats", body="We need 40 seats."))
    response = api.call("POST", f"/api/inbox/{converted}/new", NINA,
                        json={"summary": "  Forty   seats "})
    assert response.status_code == 200, response.text
    new_ticket = box.rows(TICKETS, TICKETS.c.id == response.json()["ticket_id"])[0]
    assert (new_ticket.summary, new_ticket.type) == ("Forty seats", "opportunity")
    assert "We need 40 seats." in new_ticket.details
    no_body = box.item(mail("zed@newco.example", "No body given"))
    response = api.call("POST", f"/api/inbox/{no_body}/new", NINA)
    assert response.status_code == 200, response.text
    assert box.rows(TICKETS, TICKETS.c.id == response.json()["ticket_id"])[0].summary == (
        "No body given")

    noted = box.item(mail("zed@newco.example", "For the file", body="Call me Monday."))
    response = api.call("POST", f"/api/inbox/{noted}/note", NINA)
    assert response.status_code == 200, response.text
    note = box.rows(CRM_NOTES, CRM_NOTES.c.id == response.json()["crm_note_id"])[0]
    assert "Call me Monday." in note.body
    named = box.item(mail("someone@nowhere.example", "Elsewhere"))
    refused = api.call("POST", f"/api/inbox/{named}/note", NINA)
    assert refused.status_code == 400
    assert "no client owns the sender's domain nowhere.example" in refused.json()["detail"]
    assert box.show(named)["status"] == "open"
    response = api.call("POST", f"/api/inbox/{named}/note", NINA, json={"client": "Newco"})
    assert response.status_code == 200 and response.json()["status"] == "noted"


def test_refusals_change_nothing(api: Api) -> None:
    box = api.box
    ticket = _opportunity(box)
    item = box.item(mail("zed@newco.example", "Careful"))
    tickets = box.count("tickets")
    for method, path, body, status in (
        ("POST", f"/api/inbox/{item}/attach", {"ticket_id": 999999}, 404),
        ("POST", f"/api/inbox/{item}/attach", {}, 422),
        ("POST", f"/api/inbox/{item}/attach", {"ticket_id": "x"}, 422),
        ("POST", f"/api/inbox/{item}/new", {"summary": "   "}, 422),
        ("POST", f"/api/inbox/{item}/note", {"client": ""}, 422),
        ("POST", f"/api/inbox/{item}/note", {"client": "No Such Client"}, 404),
        ("POST", f"/api/inbox/{item}/new", {"unknown": 1}, 422),
    ):
        response = api.call(method, path, NINA, json=body)
        assert response.status_code == status, (path, body, response.text)
    assert box.show(item)["status"] == "open" and box.count("tickets") == tickets
    # Another agent acting on Nina's item: 404, and nothing happens.
    for method, path, body in (("POST", f"/api/inbox/{item}/attach", {"ticket_id": ticket}),
                               ("POST", f"/api/inbox/{item}/new", None),
                               ("POST", f"/api/inbox/{item}/note", {"client": "Newco"}),
                               ("DELETE", f"/api/inbox/{item}", None)):
        assert api.call(method, path, OMAR, json=body).status_code == 404
    assert box.show(item)["status"] == "open"


def test_delete_is_for_administrators_and_hides_the_item(api: Api) -> None:
    box = api.box
    item = box.item(mail("zed@newco.example", "Spam?"))
    forbidden = api.call("DELETE", f"/api/inbox/{item}", NINA)
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == (
        f"only administrators delete inbox items; {NINA} is not one")
    assert box.show(item)["status"] == "open"
    deleted = api.call("DELETE", f"/api/inbox/{item}", ADA)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert api.call("GET", "/api/inbox", NINA).json()["items"] == []
    assert [r["id"] for r in api.call("GET", "/api/inbox", NINA,
                                      params={"status": "deleted"}).json()["items"]] == [item]
    assert api.call("GET", f"/api/inbox/{item}/raw", ADA).status_code == 200


def test_a_second_action_is_409_with_the_current_state(api: Api) -> None:
    box = api.box
    ticket = _opportunity(box)
    item = box.item(mail("zed@newco.example", "Twice"))
    first = api.call("POST", f"/api/inbox/{item}/attach", NINA, json={"ticket_id": ticket})
    assert first.status_code == 200
    tickets, actions = box.count("tickets"), box.count("actions")
    for method, path, body, agent in (
        ("POST", f"/api/inbox/{item}/attach", {"ticket_id": ticket}, NINA),
        ("POST", f"/api/inbox/{item}/new", None, NINA),
        ("POST", f"/api/inbox/{item}/note", {"client": "Newco"}, ADA),
        ("DELETE", f"/api/inbox/{item}", None, ADA),
    ):
        response = api.call(method, path, agent, json=body)
        assert response.status_code == 409, (path, response.text)
        assert response.json() == {"detail": f"item {item} is already attached",
                                   "current": first.json()}
    assert (box.count("tickets"), box.count("actions")) == (tickets, actions)


@pytest.mark.parametrize("routes", [("new", "new"), ("attach", "new"), ("note", "attach")])
def test_two_concurrent_calls_on_one_item_make_one_2xx_and_one_409(
    api: Api, routes: tuple[str, str]
) -> None:
    box = api.box
    ticket = _opportunity(box)
    bodies = {"attach": {"ticket_id": ticket}, "new": {}, "note": {"client": "Newco"}}
    for round_number in range(3):
        item = box.item(mail("zed@newco.example", f"Race {round_number}"))
        tickets = box.count("tickets")
        responses = _race(api, item, [(routes[0], NINA, bodies[routes[0]]),
                                      (routes[1], ADA, bodies[routes[1]])])
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 409], [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 200)
        loser = next(r.json() for r in responses if r.status_code == 409)
        assert loser["current"] == winner == box.show(item)
        made = 1 if winner["status"] == "converted" else 0
        assert box.count("tickets") == tickets + made
        assert len(box.rows(ACTIONS, ACTIONS.c.inbound_message_id == winner["inbound_id"])) == (
            0 if winner["status"] == "noted" else 1)


def _race(api: Api, item: int, calls: list[tuple[str, str, dict[str, Any]]]
          ) -> list[httpx.Response]:
    """The calls at once, each on its own connection, released together by a barrier."""
    start = threading.Barrier(len(calls))
    responses: list[httpx.Response | None] = [None] * len(calls)

    def call(index: int, route: str, agent: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=api.base, timeout=60) as client:
            start.wait(10)
            responses[index] = client.post(
                f"/api/inbox/{item}/{route}", json=body,
                headers={"Authorization": f"Bearer {api.tokens[agent]}"})

    threads = [threading.Thread(target=call, args=(i, *c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a call hung"
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def test_raw_of_a_purged_message_is_410_with_the_date(api: Api) -> None:
    """`messages purge` keeps an open item's bytes; once the item is acted on and purged,
    the raw route answers 410 Gone naming the purge date."""
    from datetime import timedelta

    from ingestd.db.tables import INBOUND
    from ingestd.services.retention import purge_raw

    item = api.box.item(mail("zed@newco.example", "Old quote"))
    with api.box.engine.begin() as conn:
        for row in conn.execute(sa.select(INBOUND.c.id, INBOUND.c.received_at)).all():
            conn.execute(sa.update(INBOUND).where(INBOUND.c.id == row.id)
                         .values(received_at=row.received_at - timedelta(days=40)))
    assert purge_raw(api.box.engine, timedelta(days=30)) == 0  # the item is still open
    assert api.call("DELETE", f"/api/inbox/{item}", ADA).status_code == 200
    assert purge_raw(api.box.engine, timedelta(days=30)) == 1
    gone = api.call("GET", f"/api/inbox/{item}/raw", NINA)
    assert gone.status_code == 410
    assert gone.json()["detail"].startswith("message ") and "raw bytes purged on 20" in (
        gone.json()["detail"])
