"""Settings of pulled mailboxes: where the mail is fetched from, how often, and with what secret.

Secrets never sit in the YAML: a ``*_file`` key names a file read on every
connection (so a rotated password needs no restart), a ``*_env`` key names
an environment variable. A relative file is relative to the configuration
file's directory, so the service's working directory does not matter.
"""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def resolved(value: Path | None, info: ValidationInfo) -> Path | None:
    """``value`` made absolute against the configuration file's directory."""
    if value is None or value.is_absolute():
        return value
    base = (info.context or {}).get("config_dir")
    return Path(base) / value if base is not None else value


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapSettings(_Frozen):
    host: str = Field(min_length=1)
    # None: 993 with implicit TLS, else 143.
    port: int | None = Field(default=None, ge=1, le=65535)
    # none sends the password in clear: refused unless the server is this machine.
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    username: str = Field(min_length=1)
    auth: Literal["password", "xoauth2"] = "password"
    password_file: Path | None = None
    password_env: str | None = Field(default=None, min_length=1)
    # xoauth2: a file holding the current access token, re-read on every
    # connection; whatever refreshes it (a cron job, a token broker) is the admin's.
    token_file: Path | None = None
    folders: tuple[str, ...] = Field(default=("INBOX",), min_length=1)
    # A CA bundle for a server whose certificate the system store does not know.
    ca_file: Path | None = None
    # Every network wait of one IMAP command; a server that stalls longer is
    # dropped and retried (the mailbox shows status `error`).
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    # Messages fetched (and committed with their checkpoint) per round trip.
    fetch_batch: int = Field(default=25, ge=1, le=1000)

    @field_validator("password_file", "token_file", "ca_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolved(value, info)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.tls == "implicit" else 143

    @model_validator(mode="after")
    def _credentials(self) -> ImapSettings:
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError(f"tls: none would send the password to {self.host} in clear; "
                             "it is allowed only for a server on this machine (127.0.0.1, ::1)")
        if self.auth == "password":
            if (self.password_file is None) == (self.password_env is None):
                raise ValueError("auth: password needs exactly one of password_file "
                                 "or password_env (never the password itself)")
            if self.token_file is not None:
                raise ValueError("token_file is for auth: xoauth2")
        else:
            if self.token_file is None:
                raise ValueError("auth: xoauth2 needs token_file (a file holding the "
                                 "current access token)")
            if self.password_file is not None or self.password_env is not None:
                raise ValueError("auth: xoauth2 uses token_file, not a password")
        return self

    @field_validator("folders")
    @classmethod
    def _folders(cls, folders: tuple[str, ...]) -> tuple[str, ...]:
        for folder in folders:
            if not folder or any(ch in folder for ch in "\r\n\x00"):
                raise ValueError(f"{folder!r} is not a folder name")
        if len(set(folders)) != len(folders):
            raise ValueError("a folder is listed twice")
        return folders


class GmailSettings(_Frozen):
    """A Gmail or Google Workspace mailbox, read through the Gmail API (read-only scope).

    Either a service account with domain-wide delegation (``credentials_file``
    is its key, ``subject`` the mailbox user), or an OAuth client
    (``credentials_file`` is the client's JSON from the Google Cloud console,
    ``token_file`` the refresh token ``ingestd mailboxes auth NAME`` stores).
    """

    credentials_file: Path
    subject: str | None = Field(default=None, min_length=3)
    token_file: Path | None = None
    # Labels whose new mail is imported (a filter may file mail elsewhere).
    labels: tuple[str, ...] = Field(default=("INBOX",), min_length=1)
    # For tests and sovereign setups; None: Google's.
    api_endpoint: str | None = None
    token_uri: str | None = None
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    fetch_batch: int = Field(default=25, ge=1, le=500)

    @field_validator("credentials_file", "token_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolved(value, info)

    @field_validator("api_endpoint", "token_uri")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value.startswith("https://"):
            return value
        host = urlsplit(value).hostname or ""
        if value.startswith("http://") and is_loopback(host):
            return value  # a test server or a local proxy on this machine
        raise ValueError(f"{value!r} must be an https:// URL (tokens travel on it; plain "
                         "http only to this machine)")

    @model_validator(mode="after")
    def _one_way_in(self) -> GmailSettings:
        if (self.subject is None) == (self.token_file is None):
            raise ValueError("set subject (a service account with domain-wide delegation "
                             "acting as that user) or token_file (an OAuth client's refresh "
                             "token, written by `ingestd mailboxes auth`), not both")
        return self

    @property
    def service_account(self) -> bool:
        return self.subject is not None


class GraphSettings(_Frozen):
    """A Microsoft 365 mailbox, read through Microsoft Graph with an app registration's
    client credentials (application permission Mail.Read, admin consent)."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_file: Path | None = None
    client_secret_env: str | None = Field(default=None, min_length=1)
    # A certificate instead of a secret: its private key (PEM) and SHA-1 thumbprint.
    certificate_file: Path | None = None
    certificate_thumbprint: str | None = Field(default=None, min_length=1)
    # The mailbox: a user principal name or object id.
    user: str = Field(min_length=1)
    # Well-known names (inbox, archive ...) or folder ids; each with its own delta link.
    folders: tuple[str, ...] = Field(default=("inbox",), min_length=1)
    # None: Microsoft's (https://login.microsoftonline.com, https://graph.microsoft.com).
    authority: str | None = None
    graph_url: str | None = None
    # A CA bundle for a TLS-intercepting proxy or a test server.
    ca_file: Path | None = None
    # When the client secret runs out: warned about 30 days ahead.
    secret_expires: date | None = None
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    fetch_batch: int = Field(default=25, ge=1, le=500)

    @field_validator("client_secret_file", "certificate_file", "ca_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolved(value, info)

    @field_validator("authority", "graph_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            # msal refuses any other authority, and the token must not travel in clear.
            raise ValueError(f"{value!r} is not an https:// URL")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _one_credential(self) -> GraphSettings:
        given = [k for k in ("client_secret_file", "client_secret_env", "certificate_file")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of client_secret_file, client_secret_env or "
                             "certificate_file (never the secret itself)")
        if (self.certificate_file is None) != (self.certificate_thumbprint is None):
            raise ValueError("certificate_file and certificate_thumbprint go together")
        return self

    def secret_days_left(self, today: date) -> int | None:
        """Days until ``secret_expires`` (negative once past); None when not set."""
        return (self.secret_expires - today).days if self.secret_expires is not None else None


class PullSettings(_Frozen):
    """The keys a mailbox has for pulling (mixed into ``Mailbox``)."""

    source: Literal["smtp", "imap", "gmail", "graph"] = "smtp"
    # false: the mailbox is not polled (status `disabled`); SMTP mail to its
    # addresses is still accepted.
    enabled: bool = True
    # Seconds between polls (Halo polls every 10 minutes; 60 s is ours).
    poll_interval: float = Field(default=60, ge=1, le=86_400)
    # On the first connection: import mail from this date on. None: import
    # nothing that is already there, only what arrives afterwards.
    import_since: date | None = None
    # After a lost cursor (UIDVALIDITY changed): mail of this many days is
    # listed again (what is already stored is skipped).
    resync_lookback_days: int = Field(default=7, ge=0, le=3650)
    imap: ImapSettings | None = None
    gmail: GmailSettings | None = None
    graph: GraphSettings | None = None

    @property
    def pulled(self) -> bool:
        return self.source != "smtp"

    @property
    def pull_folders(self) -> tuple[str, ...]:
        """The folders (IMAP) or labels (Gmail) polled, each with its own checkpoint."""
        if self.imap is not None:
            return self.imap.folders
        if self.gmail is not None:
            return self.gmail.labels
        if self.graph is not None:
            return self.graph.folders
        return ()

    @model_validator(mode="after")
    def _source_settings(self) -> PullSettings:
        for kind, block in (("imap", self.imap), ("gmail", self.gmail), ("graph", self.graph)):
            if self.source == kind and block is None:
                raise ValueError(f"source: {kind} needs the {kind}: settings")
            if self.source != kind and block is not None:
                raise ValueError(f"{kind}: settings are given but source is {self.source}")
        return self
