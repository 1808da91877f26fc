"""The Gmail fake, driven through the real google-api-python-client and google-auth.

These pin down the behaviour the Gmail pull's tests rely on: if the fake drifted from what the
client library sends or expects, those tests would pass against something Gmail is not.
"""

from __future__ import annotations

import base64
import itertools
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httplib2
import pytest
from google.auth.credentials import Credentials as BaseCredentials
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials as UserCredentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.gmailfake import GMAIL_READONLY, GmailFake, rate_limit_error

ALICE = "alice@corp.example"
BOB = "bob@corp.example"


def gmail(fake: GmailFake, creds: BaseCredentials) -> Any:
    return build("gmail", "v1", credentials=creds, client_options={"api_endpoint": fake.base_url},
                 static_discovery=True, cache_discovery=False)


def user_creds(fake: GmailFake, tmp_path: Path, email: str) -> BaseCredentials:
    path = fake.authorized_user_file(tmp_path / f"{email}.json", email)
    # google-auth always resets token_uri to Google's when loading (connectors.md G4).
    creds: BaseCredentials = UserCredentials.from_authorized_user_file(
        str(path)).with_token_uri(fake.token_uri)
    return creds


def delegated_creds(fake: GmailFake, tmp_path: Path, email: str) -> BaseCredentials:
    key = fake.service_account_file(tmp_path / "key.json")
    creds: BaseCredentials = service_account.Credentials.from_service_account_file(
        str(key), scopes=[GMAIL_READONLY]).with_subject(email)
    return creds


@pytest.fixture(params=["authorized_user", "service_account"])
def alice(request: pytest.FixtureRequest, gmail_fake: GmailFake, tmp_path: Path) -> Any:
    """A Gmail client acting as alice, with either kind of credentials."""
    gmail_fake.add_user(ALICE)
    make = user_creds if request.param == "authorized_user" else delegated_creds
    return gmail(gmail_fake, make(gmail_fake, tmp_path, ALICE))


def message(n: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: sender{n}@example.net\r\nTo: {ALICE}\r\nSubject: message {n}\r\n"
            f"Message-ID: <{n}@example.net>\r\n\r\n").encode() + body


def list_ids(service: Any, **params: Any) -> tuple[list[str], int]:
    """Every id messages.list returns, following pages; and how many pages it took."""
    ids: list[str] = []
    pages = 0
    request = service.users().messages().list(userId="me", **params)
    while request is not None:
        response = request.execute()
        pages += 1
        ids += [m["id"] for m in response.get("messages", [])]
        request = service.users().messages().list_next(request, response)
    return ids, pages


def history_pages(service: Any, start: str, **params: Any) -> list[dict[str, Any]]:
    responses = []
    request = service.users().history().list(userId="me", startHistoryId=start, **params)
    while request is not None:
        response = request.execute()
        responses.append(response)
        request = service.users().history().list_next(request, response)
    return responses


def test_profile_names_the_user_and_the_current_history_id(gmail_fake: GmailFake,
                                                           alice: Any) -> None:
    profile = alice.users().getProfile(userId="me").execute()
    assert profile["emailAddress"] == ALICE
    assert int(profile["historyId"]) == gmail_fake.history_id(ALICE)
    gmail_fake.deliver(ALICE, message(1))
    later = alice.users().getProfile(userId=ALICE).execute()
    assert int(later["historyId"]) > int(profile["historyId"])
    assert gmail_fake.writes() == []


def test_list_pages_newest_first_and_filters_by_label_and_date(gmail_fake: GmailFake,
                                                               alice: Any) -> None:
    assert alice.users().messages().list(userId="me").execute() == {"resultSizeEstimate": 0}
    gmail_fake.page_size = 2
    days = [datetime(2026, 11, d, 4, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]
    inbox = [gmail_fake.deliver(ALICE, message(n), internal_date=day)
             for n, day in enumerate(days)]
    sent = gmail_fake.deliver(ALICE, message(9), labels=("SENT",), internal_date=days[2])

    ids, pages = list_ids(alice, labelIds=["INBOX"])
    assert ids == inbox[::-1]
    assert pages == 3
    page_tokens = [r.query.get("pageToken") for r in gmail_fake.api_requests()]
    assert page_tokens[-3] is None and page_tokens[-2] and page_tokens[-1]

    assert sorted(list_ids(alice)[0]) == sorted([*inbox, sent])
    cutoff = int(days[3].timestamp())
    assert list_ids(alice, labelIds=["INBOX"], q=f"after:{cutoff}")[0] == inbox[:2:-1]
    # Date terms count from midnight PST: 04:00 UTC on 3 Nov is still 2 Nov there.
    assert list_ids(alice, labelIds=["INBOX"], q="after:2026/11/03")[0] == inbox[:2:-1]
    assert list_ids(alice, labelIds=["INBOX"], q="after:2026/11/02 before:2026/11/03")[0] == [
        inbox[2]]
    first = alice.users().messages().list(userId="me", labelIds=["INBOX"], maxResults=1).execute()
    assert [m["id"] for m in first["messages"]] == [inbox[-1]]
    assert first["resultSizeEstimate"] == 5


def test_raw_round_trips_byte_exact(gmail_fake: GmailFake, alice: Any) -> None:
    odd = message(1, "Grüße, naïve café\r\nbare LF\nCR alone\r.\r\n\r\n".encode("latin-1")
                  + bytes(range(256)) + b"no final newline")
    big = message(2, b"x" * 3_000_000 + b"\r\n")
    for raw in (odd, big):
        mid = gmail_fake.deliver(ALICE, raw, internal_date=datetime(2026, 12, 1, tzinfo=UTC))
        got = alice.users().messages().get(userId="me", id=mid, format="raw").execute()
        assert base64.urlsafe_b64decode(got["raw"]) == raw
        assert got["id"] == mid and got["threadId"] and got["labelIds"] == ["INBOX"]
        assert got["internalDate"] == str(int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
                                          * 1000)
        assert int(got["historyId"]) <= gmail_fake.history_id(ALICE)


def test_a_deleted_message_is_404_not_found(gmail_fake: GmailFake, alice: Any) -> None:
    mid = gmail_fake.deliver(ALICE, message(1))
    gmail_fake.delete(ALICE, mid)
    with pytest.raises(HttpError) as caught:
        alice.users().messages().get(userId="me", id=mid, format="raw").execute()
    assert caught.value.resp.status == 404
    assert caught.value.error_details[0]["reason"] == "notFound"
    assert list_ids(alice)[0] == []


def test_history_lists_additions_in_pages_and_ends_on_the_current_id(gmail_fake: GmailFake,
                                                                    alice: Any) -> None:
    start = alice.users().getProfile(userId="me").execute()["historyId"]
    quiet = alice.users().history().list(userId="me", startHistoryId=start).execute()
    assert quiet == {"historyId": start}

    gmail_fake.page_size = 2
    added = [gmail_fake.deliver(ALICE, message(n)) for n in range(3)]
    gmail_fake.deliver(ALICE, message(8), labels=("SENT",))
    gmail_fake.delete(ALICE, added[0])
    gmail_fake.deliver(ALICE, message(9), labels=("DRAFT",))
    added.append(gmail_fake.deliver(ALICE, message(3), labels=("INBOX", "UNREAD")))

    pages = history_pages(alice, start, historyTypes=["messageAdded"], labelId="INBOX")
    assert len(pages) == 2
    records = [h for page in pages for h in page["history"]]
    assert [h["messagesAdded"][0]["message"]["id"] for h in records] == added
    assert all("messagesDeleted" not in h for h in records)
    assert records[-1]["messagesAdded"][0]["message"]["labelIds"] == ["INBOX", "UNREAD"]
    record_ids = [int(h["id"]) for h in records]
    assert record_ids == sorted(record_ids) and int(start) < record_ids[0]
    assert all(b - a > 1 for a, b in itertools.pairwise(record_ids))  # gaps
    assert pages[-1]["historyId"] == str(gmail_fake.history_id(ALICE))

    every_kind = [h for page in history_pages(alice, start) for h in page["history"]]
    assert len(every_kind) == 7
    assert [h["messagesDeleted"][0]["message"]["id"] for h in every_kind
            if "messagesDeleted" in h] == [added[0]]


def test_expired_history_is_404_until_the_client_starts_over(gmail_fake: GmailFake,
                                                             alice: Any) -> None:
    start = alice.users().getProfile(userId="me").execute()["historyId"]
    gmail_fake.deliver(ALICE, message(1))
    gmail_fake.expire_history(ALICE)
    with pytest.raises(HttpError) as caught:
        alice.users().history().list(userId="me", startHistoryId=start).execute()
    assert caught.value.resp.status == 404
    assert caught.value.error_details[0]["reason"] == "notFound"

    fresh = alice.users().getProfile(userId="me").execute()["historyId"]
    later = gmail_fake.deliver(ALICE, message(2))
    records = alice.users().history().list(userId="me", startHistoryId=fresh).execute()["history"]
    assert [h["messagesAdded"][0]["message"]["id"] for h in records] == [later]


def test_an_expired_access_token_is_refreshed_and_the_call_replayed(gmail_fake: GmailFake,
                                                                   alice: Any) -> None:
    alice.users().getProfile(userId="me").execute()
    gmail_fake.expire_access_tokens()
    assert alice.users().getProfile(userId="me").execute()["emailAddress"] == ALICE
    trail = [(r.method, r.path, r.status) for r in gmail_fake.requests]
    profile = "/gmail/v1/users/me/profile"
    assert trail == [("POST", "/token", 200), ("GET", profile, 200), ("GET", profile, 401),
                     ("POST", "/token", 200), ("GET", profile, 200)]
    tokens = [r.headers["authorization"] for r in gmail_fake.api_requests()]
    assert tokens[0] == tokens[1] != tokens[2]


def test_a_revoked_grant_raises_refresh_error_until_restored(gmail_fake: GmailFake,
                                                            alice: Any) -> None:
    alice.users().getProfile(userId="me").execute()
    gmail_fake.revoke()
    with pytest.raises(RefreshError) as caught:
        alice.users().getProfile(userId="me").execute()
    assert "invalid_grant" in str(caught.value)
    assert not caught.value.retryable
    gmail_fake.restore()
    assert alice.users().getProfile(userId="me").execute()["emailAddress"] == ALICE


def test_rate_limits_carry_the_gmail_error_and_retry_after(gmail_fake: GmailFake,
                                                          alice: Any) -> None:
    gmail_fake.fail_next("GET", r"/messages$", 429, headers={"Retry-After": "7"})
    gmail_fake.fail_next("GET", r"/history$", 403,
                         body=rate_limit_error(403, "userRateLimitExceeded"), times=2)
    with pytest.raises(HttpError) as limited:
        alice.users().messages().list(userId="me").execute()
    assert limited.value.resp.status == 429
    assert limited.value.resp.get("retry-after") == "7"
    assert limited.value.error_details[0]["reason"] == "rateLimitExceeded"
    assert alice.users().messages().list(userId="me").execute() == {"resultSizeEstimate": 0}

    start = alice.users().getProfile(userId="me").execute()["historyId"]
    for _ in range(2):
        with pytest.raises(HttpError) as quota:
            alice.users().history().list(userId="me", startHistoryId=start).execute()
        assert quota.value.resp.status == 403
        assert quota.value.resp.get("retry-after") is None
        assert quota.value.error_details[0]["reason"] == "userRateLimitExceeded"
    assert alice.users().history().list(userId="me", startHistoryId=start).execute()


def test_writes_are_refused_and_recorded(gmail_fake: GmailFake, alice: Any) -> None:
    mid = gmail_fake.deliver(ALICE, message(1))
    alice.users().messages().get(userId="me", id=mid, format="raw").execute()
    assert gmail_fake.writes() == []
    with pytest.raises(HttpError) as caught:
        alice.users().messages().modify(userId="me", id=mid,
                                        body={"removeLabelIds": ["UNREAD"]}).execute()
    assert caught.value.resp.status == 500
    assert [(w.method, w.path) for w in gmail_fake.writes()] == [
        ("POST", f"/gmail/v1/users/me/messages/{mid}/modify")]
    assert json.loads(gmail_fake.writes()[0].body) == {"removeLabelIds": ["UNREAD"]}


def test_a_token_opens_only_its_own_mailbox(gmail_fake: GmailFake, alice: Any) -> None:
    gmail_fake.add_user(BOB)
    with pytest.raises(HttpError) as caught:
        alice.users().getProfile(userId=BOB).execute()
    assert caught.value.resp.status == 403


def test_api_calls_without_a_live_token_get_401(gmail_fake: GmailFake) -> None:
    gmail_fake.add_user(ALICE)
    for headers in ({}, {"Authorization": "Bearer ya29.made-up"}):
        request = urllib.request.Request(gmail_fake.base_url + "gmail/v1/users/me/profile",
                                         headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401
        assert json.load(caught.value)["error"]["status"] == "UNAUTHENTICATED"


def test_service_account_needs_a_known_subject(gmail_fake: GmailFake, tmp_path: Path) -> None:
    gmail_fake.add_user(ALICE)
    stranger = gmail(gmail_fake, delegated_creds(gmail_fake, tmp_path, "eve@corp.example"))
    with pytest.raises(RefreshError, match="invalid_grant"):
        stranger.users().getProfile(userId="me").execute()
    form = gmail_fake.token_requests()[0].body.decode()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in form


def test_user_credentials_need_the_fakes_client_secret(gmail_fake: GmailFake,
                                                       tmp_path: Path) -> None:
    gmail_fake.add_user(ALICE)
    path = gmail_fake.authorized_user_file(tmp_path / "alice.json", ALICE)
    info = json.loads(path.read_text())
    assert info["type"] == "authorized_user" and info["token_uri"] == gmail_fake.token_uri
    info["client_secret"] = "wrong"
    creds = UserCredentials.from_authorized_user_info(info).with_token_uri(gmail_fake.token_uri)
    with pytest.raises(RefreshError, match="invalid_client"):
        gmail(gmail_fake, creds).users().getProfile(userId="me").execute()


def test_a_batch_serves_each_part_on_its_own(gmail_fake: GmailFake, alice: Any) -> None:
    ids = [gmail_fake.deliver(ALICE, message(n, "Grüße\r\n".encode())) for n in range(4)]
    gmail_fake.delete(ALICE, ids[3])
    alice.users().getProfile(userId="me").execute()  # a token, which then expires
    gmail_fake.expire_access_tokens()
    gmail_fake.fail_next("GET", rf"/messages/{ids[1]}$", 429, headers={"Retry-After": "3"})
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def collect(request_id: str, response: Any, error: HttpError | None) -> None:
        results[request_id] = (response, error)

    # new_batch_http_request() would go to Google whatever api_endpoint says (G2).
    batch = BatchHttpRequest(callback=collect, batch_uri=gmail_fake.base_url + "batch")
    for mid in ids:
        batch.add(alice.users().messages().get(userId="me", id=mid, format="raw"),
                  request_id=mid)
    batch.execute()

    for n in (0, 2):
        response, error = results[ids[n]]
        assert error is None
        assert base64.urlsafe_b64decode(response["raw"]) == message(n, "Grüße\r\n".encode())
    limited = results[ids[1]][1]
    assert limited is not None and limited.resp.status == 429
    assert limited.resp.get("retry-after") == "3"
    gone = results[ids[3]][1]
    assert gone is not None and gone.resp.status == 404
    # The faulted part answers before auth; the others met the expired token, so the client
    # refreshed once and resent just those three.
    statuses = [r.status for r in gmail_fake.api_requests() if "/messages/" in r.path]
    assert statuses == [401, 429, 401, 401, 200, 200, 404]
    assert [r.path for r in gmail_fake.requests].count("/token") == 2
    assert gmail_fake.writes() == []


def test_a_slow_answer_trips_the_clients_timeout(gmail_fake: GmailFake, tmp_path: Path) -> None:
    gmail_fake.add_user(ALICE)
    http = AuthorizedHttp(user_creds(gmail_fake, tmp_path, ALICE), http=httplib2.Http(timeout=0.2))
    service = build("gmail", "v1", http=http, client_options={"api_endpoint": gmail_fake.base_url},
                    static_discovery=True, cache_discovery=False)
    gmail_fake.delay_next("GET", r"/profile$", 30)
    with pytest.raises(TimeoutError):
        service.users().getProfile(userId="me").execute()
    assert service.users().getProfile(userId="me").execute()["emailAddress"] == ALICE


def test_a_fault_in_the_fake_is_reported_not_swallowed(gmail_fake: GmailFake, alice: Any) -> None:
    gmail_fake._mailboxes[ALICE].history.append(None)  # type: ignore[arg-type]  # a broken model
    with pytest.raises(HttpError) as caught:
        alice.users().history().list(userId="me", startHistoryId="1").execute()
    assert caught.value.resp.status == 500
    assert len(gmail_fake.errors) == 1 and "/history" in gmail_fake.errors[0]
    gmail_fake.errors.clear()  # the fixture would fail this test otherwise


def test_label_changes_show_in_history_by_type(gmail_fake: GmailFake, alice: Any) -> None:
    archived = gmail_fake.deliver(ALICE, message(1), labels=("INBOX", "UNREAD"))
    start = alice.users().getProfile(userId="me").execute()["historyId"]
    gmail_fake.relabel(ALICE, archived, remove=("INBOX",))
    gmail_fake.relabel(ALICE, archived, add=("INBOX", "IMPORTANT"), remove=("UNREAD",))

    added = alice.users().history().list(userId="me", startHistoryId=start,
                                         historyTypes=["labelAdded"], labelId="INBOX").execute()
    [record] = added["history"]
    assert record["labelsAdded"] == [{
        "message": {"id": archived, "threadId": archived, "labelIds": ["INBOX", "IMPORTANT"]},
        "labelIds": ["INBOX", "IMPORTANT"]}]
    everything = alice.users().history().list(userId="me", startHistoryId=start).execute()
    assert [next(k for k in h if k not in ("id", "messages")) for h in everything["history"]] == [
        "labelsRemoved", "labelsAdded", "labelsRemoved"]
    got = alice.users().messages().get(userId="me", id=archived, format="minimal").execute()
    assert got["labelIds"] == ["INBOX", "IMPORTANT"] and "raw" not in got
    assert got["historyId"] == everything["historyId"]
