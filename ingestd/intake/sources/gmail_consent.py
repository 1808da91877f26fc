"""``ingestd mailboxes auth NAME``: an administrator consents once; the refresh token is stored.

Google's installed-app flow with a loopback redirect: the consent page sends the
browser to http://127.0.0.1:PORT/?code=... . Where a browser runs on the same
machine, google-auth-oauthlib's local server receives that request. On a
headless server nothing listens where the admin's browser is, so ``--paste``
prints the consent URL and reads back the address the browser ended on (the
page fails to load; its address still carries the code). Google retired the
copy-the-code ("oob") flow in 2023, so this is the headless path that remains.

The token file is written with mode 0600, atomically, and (when run as root)
owned by the owner of its directory: the service user must be able to read it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingestd.config.pulls import GmailSettings
from ingestd.errors import CredentialsRejected, InvalidRequest
from ingestd.intake.sources.gmail import SCOPE

_WAIT_FOR_BROWSER_SECONDS = 600


def client_config(settings: GmailSettings) -> dict[str, Any]:
    """The OAuth client's JSON (Google Cloud console, "Desktop app"), token URI overridden."""
    try:
        config = json.loads(Path(settings.credentials_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"credentials_file {settings.credentials_file}: "
                             f"{exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InvalidRequest(f"credentials_file {settings.credentials_file}: not JSON") from exc
    kind = next((k for k in ("installed", "web") if k in config), None)
    if kind is None:
        raise InvalidRequest(f"credentials_file {settings.credentials_file} is not an OAuth "
                             "client's JSON (no 'installed' or 'web' section)")
    if settings.token_uri is not None:
        config[kind] = {**config[kind], "token_uri": settings.token_uri}
    return dict(config)


def consent_by_paste(settings: GmailSettings, port: int, show: Callable[[str], None],
                     ask: Callable[[], str]) -> Any:
    """The flow for a headless server: show the URL, read back the redirected address."""
    from google_auth_oauthlib.flow import Flow

    flow = Flow.from_client_config(client_config(settings), scopes=[SCOPE],
                                   redirect_uri=f"http://127.0.0.1:{port}/")
    url, _state = flow.authorization_url(access_type="offline", prompt="consent")
    show(f"1. Open this address in any browser and consent (read-only access to mail):\n\n"
         f"   {url}\n\n"
         f"2. The browser then goes to http://127.0.0.1:{port}/?... and fails to load it. "
         "Copy that whole address from the address bar and paste it here:")
    answer = ask().strip()
    if "code=" not in answer:
        raise InvalidRequest("that is not the redirected address (it has no code=...)")
    # oauthlib insists on https for the response; the loopback redirect is plain http.
    if answer.startswith("http://"):
        answer = "https://" + answer[len("http://"):]
    return _fetch(flow, answer)


def consent_locally(settings: GmailSettings, port: int, show: Callable[[str], None]) -> Any:
    """The flow where the browser runs on this machine: a local server receives the code."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    flow = InstalledAppFlow.from_client_config(client_config(settings), scopes=[SCOPE])
    show(f"Waiting on http://127.0.0.1:{port or '(a free port)'}/ for the browser to come back.")
    try:
        return flow.run_local_server(
            host="127.0.0.1", port=port, open_browser=False, access_type="offline",
            prompt="consent", timeout_seconds=_WAIT_FOR_BROWSER_SECONDS,
            authorization_prompt_message="Open this address in a browser on this machine: "
                                         "{url}")
    except (AttributeError, TypeError) as exc:
        # No request came back in time (the local server then has no address to read).
        raise InvalidRequest(f"the browser did not come back within "
                             f"{_WAIT_FOR_BROWSER_SECONDS // 60} minutes; run it again "
                             "(or use --paste)") from exc


def _fetch(flow: Any, response: str) -> Any:
    try:
        flow.fetch_token(authorization_response=response)
    except Exception as exc:  # oauthlib's errors share no base worth naming
        raise CredentialsRejected(f"Google refused the code: {exc}") from exc
    return flow.credentials


def store_token(credentials: Any, path: Path) -> tuple[int, int]:
    """Write the authorized-user JSON with mode 0600, atomically; return its (uid, gid)."""
    if not getattr(credentials, "refresh_token", None):
        raise CredentialsRejected("Google returned no refresh token; revoke the app's access "
                                  "in the Google account and run this again")
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".token-", dir=directory)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(credentials.to_json())
        stat = directory.stat()
        if os.geteuid() == 0:
            # Written by root for a service that runs as its own user: hand it over.
            os.chown(temporary, stat.st_uid, stat.st_gid)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    owner = path.stat()
    return owner.st_uid, owner.st_gid
