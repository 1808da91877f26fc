"""The Entra ID + Graph fake, driven through the real msal and requests.

These pin down the behaviour the Microsoft 365 pull's tests rely on: if the fake drifted from
what msal sends or expects, or from the shapes Graph answers with, those tests would pass
against something Microsoft 365 is not.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests
from msal.exceptions import MsalServiceError

from tests.graphfake import GRAPH_DEFAULT_SCOPE, GraphFake
from tests.support.waiting import wait_for

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
IMMUTABLE = 'IdType="ImmutableId"'
SMALL_PAGES = f"odata.maxpagesize=2, {IMMUTABLE}"


def tls_session(fake: GraphFake) -> requests.Session:
    session = requests.Session()
    session.verify = fake.ca_file
    # REQUESTS_CA_BUNDLE is set on this machine and would override verify (connectors.md G6).
    session.trust_env = False
    return session


def confidential_app(fake: GraphFake, session: requests.Session,
                     secret: str | None = None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        fake.client_id, client_credential=secret or fake.client_secret,
        authority=f"{fake.base_url}/{fake.tenant}", instance_discovery=False,
        http_client=session)


def message(n: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: Sender {n} <sender{n}@example.net>\r\nTo: {ALICE}\r\n"
            f"Subject: message {n}\r\nMessage-ID: <{n}@example.net>\r\n\r\n").encode() + body


class Graph:
    """A Graph client as plain as the pull's will be: msal for the token, requests for calls."""

    def __init__(self, fake: GraphFake) -> None:
        self.fake = fake
        self.session = tls_session(fake)
        self.app = confidential_app(fake, self.session)
        self.token = self.acquire()

    def acquire(self) -> str:
        result = self.app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
        assert "access_token" in result, result
        return str(result["access_token"])

    def delta_url(self, user: str = ALICE, folder: str = "inbox") -> str:
        return f"{self.fake.base_url}/v1.0/users/{user}/mailFolders/{folder}/messages/delta"

    def get(self, url: str, *, prefer: str | None = SMALL_PAGES,
            params: dict[str, str] | None = None, timeout: float = 5) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if prefer is not None:
            headers["Prefer"] = prefer
        return self.session.get(url, params=params, headers=headers, timeout=timeout)

    def delta_round(self, url: str, *, prefer: str | None = SMALL_PAGES,
                    params: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int, str]:
        """Every item of one round, following nextLinks verbatim; pages taken; the deltaLink."""
        items: list[dict[str, Any]] = []
        pages = 0
        while True:
            response = self.get(url, prefer=prefer, params=params if pages == 0 else None)
            assert response.status_code == 200, response.text
            page = response.json()
            pages += 1
            items += page["value"]
            if "@odata.deltaLink" in page:
                assert "@odata.nextLink" not in page
                return items, pages, str(page["@odata.deltaLink"])
            url = page["@odata.nextLink"]

    def value(self, message_id: str, user: str = ALICE) -> requests.Response:
        return self.get(f"{self.fake.base_url}/v1.0/users/{user}/messages/{message_id}/$value",
                        prefer=IMMUTABLE)


@pytest.fixture
def graph(graph_fake: GraphFake) -> Graph:
    graph_fake.add_user(ALICE)
    return Graph(graph_fake)


# --- Entra ID through msal ------------------------------------------------------------------


def test_msal_gets_a_token_by_discovery_then_client_credentials(graph_fake: GraphFake) -> None:
    app = confidential_app(graph_fake, tls_session(graph_fake))
    result = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])

    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599 and result["access_token"]
    discovery, token = graph_fake.requests
    assert (discovery.method, discovery.path) == (
        "GET", f"/{graph_fake.tenant}/v2.0/.well-known/openid-configuration")
    assert (token.method, token.path) == ("POST", f"/{graph_fake.tenant}/oauth2/v2.0/token")
    form = parse_qs(token.body.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == [graph_fake.client_id]
    assert form["scope"] == [GRAPH_DEFAULT_SCOPE]
    # msal keeps the token: a second call is answered from its cache, not by the fake.
    again = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    assert again["access_token"] == result["access_token"]
    assert again["token_source"] == "cache"
    assert len(graph_fake.token_requests()) == 1


def test_bad_secret_and_rejected_client_come_back_as_invalid_client(
        graph_fake: GraphFake) -> None:
    session = tls_session(graph_fake)
    wrong = confidential_app(graph_fake, session, secret="not-the-secret")
    result = wrong.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "access_token" not in result

    right = confidential_app(graph_fake, session)
    graph_fake.reject_client()
    assert right.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])["error"] == (
        "invalid_client")
    graph_fake.accept_client()
    # A 401 is not throttled by msal, so the very next call reaches the fake and succeeds.
    assert "access_token" in right.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])


def test_a_scope_without_default_is_refused(graph_fake: GraphFake) -> None:
    app = confidential_app(graph_fake, tls_session(graph_fake))
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/Mail.Read"])
    assert result["error"] == "invalid_scope"
    assert result["error_codes"] == [1002012]


def test_msal_raises_while_the_authority_is_down(graph_fake: GraphFake) -> None:
    session = tls_session(graph_fake)
    graph_fake.stop_authority()
    # Discovery runs in the constructor: a 503 there raises before any token is asked for.
    with pytest.raises(MsalServiceError, match="503"):
        confidential_app(graph_fake, session)

    graph_fake.start_authority()
    app = confidential_app(graph_fake, session)
    graph_fake.stop_authority(retry_after=2)
    with pytest.raises(MsalServiceError, match="503"):
        app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    graph_fake.start_authority()
    asked = len(graph_fake.token_requests())
    # msal replays the cached 503 until Retry-After has passed, without asking (G7) ...
    with pytest.raises(MsalServiceError):
        app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    assert len(graph_fake.token_requests()) == asked

    # ... and asks again afterwards.
    def token() -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
        except MsalServiceError:
            return None
        return result

    assert "access_token" in wait_for(token, timeout=6, what="msal to retry the token endpoint")
    assert [r.status for r in graph_fake.token_requests()] == [503, 200]


def test_a_closed_fake_is_connection_refused(graph_fake: GraphFake) -> None:
    session = tls_session(graph_fake)
    graph_fake.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        confidential_app(graph_fake, session)


# --- Graph: delta -----------------------------------------------------------------------------


def test_first_round_pages_by_maxpagesize_and_ends_with_a_deltalink(graph: Graph) -> None:
    fake = graph.fake
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    ids = [fake.deliver(ALICE, message(n), received_at=t0 + timedelta(minutes=n))
           for n in range(5)]

    first = graph.get(graph.delta_url(), params={"changeType": "created"})
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("application/json")
    page = first.json()
    assert len(page["value"]) == 2
    next_link = urlsplit(page["@odata.nextLink"])
    # Absolute, on the fake's own base, with the state in $skiptoken.
    assert f"{next_link.scheme}://{next_link.netloc}" == fake.base_url
    assert set(parse_qs(next_link.query)) == {"$skiptoken"}

    items, pages, delta_link = graph.delta_round(graph.delta_url(),
                                                 params={"changeType": "created"})
    assert pages == 3
    assert [i["id"] for i in items] == ids
    assert set(parse_qs(urlsplit(delta_link).query)) == {"$deltatoken"}
    assert items[0]["receivedDateTime"] == "2026-11-01T09:00:00Z"
    assert items[0]["internetMessageId"] == "<0@example.net>"
    assert items[0]["parentFolderId"] == fake.folder_id(ALICE, "inbox")


def test_page_size_defaults_to_ten_and_can_be_forced(graph: Graph) -> None:
    fake = graph.fake
    for n in range(12):
        fake.deliver(ALICE, message(n))
    items, pages, _ = graph.delta_round(graph.delta_url(), prefer=IMMUTABLE)
    assert (len(items), pages) == (12, 2)

    fake.page_size = 5  # wins over what the client prefers
    items, pages, _ = graph.delta_round(graph.delta_url(), prefer="odata.maxpagesize=50")
    assert (len(items), pages) == (12, 3)


def test_select_limits_the_properties_and_unknown_ones_are_refused(graph: Graph) -> None:
    graph.fake.deliver(ALICE, message(1))
    items, _, _ = graph.delta_round(graph.delta_url(), params={"$select": "id"})
    assert {k for k in items[0] if not k.startswith("@")} == {"id"}

    items, _, _ = graph.delta_round(graph.delta_url(),
                                    params={"$select": "internetMessageId,receivedDateTime"})
    assert {k for k in items[0] if not k.startswith("@")} == {
        "id", "internetMessageId", "receivedDateTime"}

    refused = graph.get(graph.delta_url(), params={"$select": "id,bodyWithTypo"})
    assert refused.status_code == 400
    assert "bodyWithTypo" in refused.json()["error"]["message"]


def test_filter_bounds_a_fresh_round_by_received_time(graph: Graph) -> None:
    fake = graph.fake
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    fake.deliver(ALICE, message(1), received_at=t0 - timedelta(days=1))
    on_cutoff = fake.deliver(ALICE, message(2), received_at=t0)
    later = fake.deliver(ALICE, message(3), received_at=t0 + timedelta(hours=1))

    items, _, _ = graph.delta_round(
        graph.delta_url(), params={"$filter": "receivedDateTime ge 2026-11-01T00:00:00Z"})
    assert [i["id"] for i in items] == [on_cutoff, later]
    items, _, _ = graph.delta_round(
        graph.delta_url(), params={"$filter": "receivedDateTime gt 2026-11-01T00:00:00Z"})
    assert [i["id"] for i in items] == [later]

    bad = graph.get(graph.delta_url(), params={"$filter": "subject eq 'x'"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "ErrorInvalidUrlQueryFilter"


def test_delta_link_brings_only_what_arrived_since(graph: Graph) -> None:
    fake = graph.fake
    fake.deliver(ALICE, message(1))
    _, _, delta_link = graph.delta_round(graph.delta_url(),
                                         params={"changeType": "created", "$select": "id"})

    new = [fake.deliver(ALICE, message(n)) for n in (2, 3, 4)]
    fake.deliver(ALICE, message(5), folder="archive")  # another folder: not in this delta
    items, pages, delta_link = graph.delta_round(delta_link)
    assert [i["id"] for i in items] == new
    assert pages == 2  # the round's own pages, still 2 per page
    # $select travelled inside the token; the client did not repeat it.
    assert {k for k in items[0] if not k.startswith("@")} == {"id"}

    items, pages, _ = graph.delta_round(delta_link)
    assert (items, pages) == ([], 1)


def test_delete_gives_removed_and_value_404(graph: Graph) -> None:
    fake = graph.fake
    keep = fake.deliver(ALICE, message(1))
    gone = fake.deliver(ALICE, message(2))
    _, _, everything = graph.delta_round(graph.delta_url())
    _, _, created_only = graph.delta_round(graph.delta_url(), params={"changeType": "created"})

    fake.delete(ALICE, gone)
    items, _, after = graph.delta_round(everything)
    assert items == [{"@odata.type": "#microsoft.graph.message", "id": gone,
                      "@removed": {"reason": "deleted"}}]
    assert graph.delta_round(after)[0] == []  # reported once
    items, _, _ = graph.delta_round(created_only)
    assert items == []

    missing = graph.value(gone)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"
    assert graph.value(keep).status_code == 200


def test_replays_repeat_the_last_item_on_the_next_page(graph: Graph) -> None:
    ids = [graph.fake.deliver(ALICE, message(n)) for n in range(5)]
    graph.fake.replay_across_pages = True
    items, pages, _ = graph.delta_round(graph.delta_url())
    assert pages == 3
    assert [i["id"] for i in items] == [ids[0], ids[1], ids[1], ids[2], ids[3], ids[3], ids[4]]


def test_expired_delta_answers_410_with_a_fresh_initial_url(graph: Graph) -> None:
    fake = graph.fake
    ids = [fake.deliver(ALICE, message(n)) for n in range(3)]
    params = {"changeType": "created", "$select": "id,internetMessageId"}
    _, _, delta_link = graph.delta_round(graph.delta_url(), params=params)
    first_page = graph.get(graph.delta_url(), params=params).json()

    fake.expire_delta(ALICE)
    gone = graph.get(delta_link)
    assert gone.status_code == 410
    restart = gone.headers["Location"]
    assert restart.startswith(fake.base_url + "/v1.0/users/")
    assert "$deltatoken" not in restart and "$skiptoken" not in restart
    # An interrupted round's nextLink has expired as well.
    assert graph.get(first_page["@odata.nextLink"]).status_code == 410

    # Following Location starts over: the whole folder again, asked the same way.
    items, _, _ = graph.delta_round(restart)
    assert [i["id"] for i in items] == ids
    assert {k for k in items[0] if not k.startswith("@")} == {"id", "internetMessageId"}


def test_expired_delta_can_answer_sync_state_not_found(graph: Graph) -> None:
    graph.fake.deliver(ALICE, message(1))
    _, _, delta_link = graph.delta_round(graph.delta_url())
    graph.fake.expire_delta(ALICE, how="syncStateNotFound")

    answer = graph.get(delta_link)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "syncStateNotFound"
    assert "Location" not in answer.headers


def test_expiring_one_mailbox_leaves_the_others_alone(graph: Graph) -> None:
    graph.fake.add_user(BOB)
    graph.fake.deliver(BOB, message(1))
    _, _, bobs = graph.delta_round(graph.delta_url(BOB))
    graph.fake.expire_delta(ALICE)
    assert graph.get(bobs).status_code == 200


# --- Graph: ids, $value, auth, faults ---------------------------------------------------------


def test_ids_are_stable_only_with_the_immutable_id_preference(graph: Graph) -> None:
    message_id = graph.fake.deliver(ALICE, message(1))
    ids = [graph.delta_round(graph.delta_url(), prefer=SMALL_PAGES)[0][0]["id"]
           for _ in range(2)]
    assert ids == [message_id, message_id]

    plain = [graph.delta_round(graph.delta_url(), prefer="odata.maxpagesize=2")[0][0]["id"]
             for _ in range(2)]
    assert plain[0] != plain[1] and message_id not in plain
    # Either kind still names the message.
    assert graph.value(plain[0]).content == message(1)
    prefers = [r.headers.get("prefer") for r in graph.fake.graph_requests()]
    assert prefers[:2] == [SMALL_PAGES] * 2 and prefers[2] == "odata.maxpagesize=2"


def test_value_is_byte_exact(graph: Graph) -> None:
    raw = (b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.net>\r\nTo: alice@contoso.example\r\n"
           b"Subject: caf\xc3\xa9 8-bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n"
           b"Gr\xfc\xdfe \x80\xff trailing spaces   \r\nbare LF next\nlast line without CRLF")
    big = message(2, b"0123456789abcdef\r\n" * 150_000)  # about 2.7 MB
    small_id, big_id = graph.fake.deliver(ALICE, raw), graph.fake.deliver(ALICE, big)

    answer = graph.value(small_id)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/plain"
    assert answer.content == raw
    assert graph.value(big_id).content == big


def test_graph_wants_a_live_bearer_token(graph: Graph) -> None:
    graph.fake.deliver(ALICE, message(1))
    anonymous = graph.session.get(graph.delta_url(), timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"

    graph.fake.expire_access_tokens()
    expired = graph.get(graph.delta_url())
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in expired.headers
    # msal still hands out its cached (now refused) token; dropping it forces a new one.
    assert graph.acquire() == graph.token
    graph.app.remove_tokens_for_client()
    graph.token = graph.acquire()
    assert graph.get(graph.delta_url()).status_code == 200
    assert len(graph.fake.token_requests()) == 2


def test_throttling_answers_carry_graph_shapes(graph: Graph) -> None:
    fake = graph.fake
    fake.fail_next("GET", r"/messages/delta$", 429)
    throttled = graph.get(graph.delta_url())
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.json()["error"]["code"] == "TooManyRequests"

    fake.fail_next("GET", r"/messages/delta$", 429, headers={})
    assert "Retry-After" not in graph.get(graph.delta_url()).headers
    fake.fail_next("GET", r"/\$value$", 503, headers={"Retry-After": "2"}, times=2)
    fake.fail_next("GET", r"/messages/delta$", 504)
    unavailable = [graph.value("any"), graph.value("any")]
    assert [(a.status_code, a.json()["error"]["code"], a.headers["Retry-After"])
            for a in unavailable] == [(503, "ServiceUnavailable", "2")] * 2
    timeout = graph.get(graph.delta_url())
    assert (timeout.status_code, timeout.json()["error"]["code"]) == (504, "GatewayTimeout")

    assert graph.get(graph.delta_url()).status_code == 200  # the faults are used up
    assert [r.status for r in fake.graph_requests()] == [429, 429, 503, 503, 504, 200]


def test_a_slow_answer_trips_the_client_timeout(graph: Graph) -> None:
    graph.fake.delay_next("GET", r"/messages/delta$", 2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        graph.get(graph.delta_url(), timeout=0.2)
    assert graph.get(graph.delta_url()).status_code == 200


def test_more_than_the_mailbox_concurrency_limit_is_throttled(graph: Graph) -> None:
    fake = graph.fake
    fake.max_concurrent_per_mailbox = 1
    fake.delay_next("GET", r"/messages/delta$", 2)
    timed_out: list[bool] = []

    def slow_request() -> None:
        try:
            graph.get(graph.delta_url(), timeout=0.5)
        except requests.exceptions.ReadTimeout:
            timed_out.append(True)

    slow = threading.Thread(target=slow_request)
    slow.start()
    try:
        wait_for(lambda: fake.peak_in_flight[ALICE.lower()] == 1, what="the slow request")
        second = Graph(fake).get(graph.delta_url())
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "ApplicationThrottled"
    finally:
        slow.join()
    assert timed_out == [True]


def test_unknown_mailbox_folder_and_route(graph: Graph) -> None:
    nobody = graph.get(graph.delta_url("nobody@contoso.example"))
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "ErrorInvalidUser")
    assert graph.get(graph.delta_url(folder="nosuchfolder")).status_code == 404
    assert graph.get(f"{graph.fake.base_url}/v1.0/users/{ALICE}/calendar").status_code == 400


def test_a_pull_writes_nothing_and_writes_are_refused_and_logged(graph: Graph) -> None:
    fake = graph.fake
    message_id = fake.deliver(ALICE, message(1))
    items, _, delta_link = graph.delta_round(graph.delta_url())
    graph.value(items[0]["id"])
    graph.delta_round(delta_link)
    assert fake.writes() == []

    patched = graph.session.patch(
        f"{fake.base_url}/v1.0/users/{ALICE}/messages/{message_id}", json={"isRead": True},
        headers={"Authorization": f"Bearer {graph.token}"}, timeout=5)
    assert patched.status_code == 403
    assert patched.json()["error"]["code"] == "ErrorAccessDenied"
    assert [(w.method, w.status) for w in fake.writes()] == [("PATCH", 403)]
