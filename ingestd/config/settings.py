"""Typed, immutable settings: the shape of ``ingestd.yaml``.

Every model forbids unknown keys (a typo is an error, not a silently ignored
setting) and is frozen: settings are validated once at load and then passed
explicitly to whatever needs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ingestd.addresses import normalise_address
from ingestd.config.authentication import AuthenticationSettings
from ingestd.config.listeners import HttpSettings, SmtpSettings
from ingestd.config.protection import (
    AutoReplies,
    ClosedTicketPolicy,
    OwnMail,
    RateLimit,
    UnrelatedSenderPolicy,
)
from ingestd.config.pulls import ImapSettings, PullSettings, resolved
from ingestd.config.sales import DomainLists, Matching
from ingestd.config.tags import TagPair, TicketIdTags, start_tag_problems
from ingestd.rules.model import Rule

# Re-exported: every settings model from one place.
__all__ = ["HttpSettings", "ImapSettings", "SmtpSettings", "TagPair", "TicketIdTags",
           "start_tag_problems"]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(Settings):
    url: str = "sqlite:///var/ingestd.db"
    # How long a SQLite writer waits for another writer before giving up (and
    # SMTP answers 451). PostgreSQL ignores it.
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # PostgreSQL: how long to wait for a connection to the server, and for
    # one statement, before giving up (SMTP then answers 451). These bound how
    # long a sender waits for its reply while the database is in trouble.
    connect_timeout_seconds: int = Field(default=5, ge=1, le=600)
    statement_timeout_ms: int = Field(default=10_000, ge=100, le=3_600_000)

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
            raise ValueError(
                "must start with sqlite:/// (a file) or postgresql+psycopg:// (a server)"
            )
        if url.startswith("sqlite:///") and len(url) == len("sqlite:///"):
            raise ValueError("sqlite:/// needs a file path after it")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def reply_within_seconds(self) -> float:
        """The longest an SMTP sender waits for its reply while the database is in trouble.

        SQLite: the commit in flight when the message arrived, then its own,
        each waiting at most the busy timeout. PostgreSQL (which ignores
        busy_timeout_ms): a connection attempt plus one statement.
        """
        if self.is_sqlite:
            return 2 * self.busy_timeout_ms / 1000 + 1
        return self.connect_timeout_seconds + self.statement_timeout_ms / 1000 + 1

    @property
    def postgres_connect_args(self) -> dict[str, object]:
        """libpq settings that bound every wait on the server, for both drivers' uses."""
        return {
            "connect_timeout": self.connect_timeout_seconds,
            "options": f"-c statement_timeout={self.statement_timeout_ms}",
            # statement_timeout runs on the server: a host that vanished (no
            # RST) is only noticed by the client's TCP, so bound that too.
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": self.statement_timeout_ms + 5000,
        }

    @property
    def attempt_seconds(self) -> float:
        """How long one commit may wait for a database that is locked or unreachable."""
        if self.is_sqlite:
            return self.busy_timeout_ms / 1000
        return float(self.connect_timeout_seconds)


class UnknownSenders(Settings):
    action: Literal["create_user", "no_user"] = "create_user"
    default_client: str = Field(default="Unassigned", min_length=1)
    default_site: str = Field(default="Main", min_length=1)


class Mailbox(PullSettings, Settings):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    addresses: tuple[str, ...] = Field(min_length=1)
    ticket_type: str = Field(default="incident", min_length=1)
    ticket_id_tags: TicketIdTags = TicketIdTags()
    # A sales mailbox: the agent it belongs to, and how its mail finds opportunities.
    owner: str | None = None
    matching: Matching | None = None
    auto_replies: AutoReplies = AutoReplies()
    rate_limit: RateLimit = RateLimit()
    # Mail for a closed ticket: reopen it (Halo's way), open a new one linked to it, or
    # record and change nothing (ignored, closed-ticket).
    closed_ticket: ClosedTicketPolicy = "reopen"
    # Mail naming a ticket (tag or references) from someone unrelated to it: accept it
    # (Halo's way), open a new ticket instead, or hold it (quarantined, unrelated-sender).
    unrelated_sender: UnrelatedSenderPolicy = "accept"

    @property
    def inbox_only(self) -> bool:
        """Unmatched mail goes to the owner's My Inbox, never into a new ticket."""
        return self.matching is not None and not self.matching.enabled

    @property
    def match_type(self) -> str:
        """The ticket type this mailbox's mail is matched to and creates."""
        if self.matching is not None and self.matching.match_to:
            return self.matching.match_to
        return self.ticket_type

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} is not an email address")
        return normalise_address(value) if value is not None else None

    @model_validator(mode="after")
    def _inbox_has_owner(self) -> Mailbox:
        if self.inbox_only and self.owner is None:
            raise ValueError("matching.enabled is false, so mail goes to the owner's My Inbox: "
                             "set owner to that agent's address")
        return self

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
                raise ValueError(f"{value!r} is not an email address")
            if any(ch.isspace() for ch in value):
                raise ValueError(f"{value!r} contains white space")
        return tuple(normalise_address(v) for v in values)


class ProcessingLimits(Settings):
    """Limits checked before the parser runs; a message over one is quarantined."""

    max_parts: int = Field(default=1000, ge=1)
    max_depth: int = Field(default=30, ge=1, le=200)
    max_header_bytes: int = Field(default=262_144, ge=1024)


class ProcessingSettings(Settings):
    # None: one worker per CPU. 0: store only (a separate intake tier, benchmarks).
    workers: int | None = Field(default=None, ge=0, le=256)
    # process: each worker its own process, restarted if it dies (a crashing
    # message cannot take SMTP intake down). thread: workers share the
    # daemon's process (less memory; for small installations and tests).
    isolation: Literal["process", "thread"] = "process"
    max_attempts: int = Field(default=5, ge=1, le=100)
    # A claimed row whose worker died becomes claimable again after this.
    lease_seconds: float = Field(default=300, ge=1)
    # A worker process busy longer than this on one message is killed and the
    # message retried (counted as an attempt). Must be shorter than the lease,
    # or another worker could claim the message while the first still runs.
    timeout_seconds: float = Field(default=120, ge=0.1)
    # Wait before attempt 2, 3, ... of a message whose attempt failed (the last
    # value repeats). With the default max_attempts of 5 a message failing
    # every time is quarantined about 21 minutes after it arrived.
    retry_delays_seconds: tuple[float, ...] = Field(default=(10, 60, 300, 900), min_length=1)
    # How often idle workers look for pending rows intake did not announce.
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    limits: ProcessingLimits = ProcessingLimits()

    @model_validator(mode="after")
    def _timeout_within_lease(self) -> ProcessingSettings:
        if self.timeout_seconds >= self.lease_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds:g}) must be shorter than "
                f"lease_seconds ({self.lease_seconds:g})"
            )
        return self

    @field_validator("retry_delays_seconds")
    @classmethod
    def _delays_not_negative(cls, delays: tuple[float, ...]) -> tuple[float, ...]:
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must not be negative")
        return delays

    def retry_delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed attempt."""
        delays = self.retry_delays_seconds
        return float(delays[min(max(failed_attempts, 1), len(delays)) - 1])

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


class LoggingSettings(Settings):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON lines when stdout is not a terminal (systemd, pipes), readable otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class IngestdSettings(OwnMail, AuthenticationSettings, DomainLists, Settings):
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    unknown_senders: UnknownSenders = UnknownSenders()
    processing: ProcessingSettings = ProcessingSettings()
    logging: LoggingSettings = LoggingSettings()
    mailboxes: tuple[Mailbox, ...] = ()
    # The directory of the rule files (*.yaml, applied in file-name order); relative to
    # the configuration file. None: no rules.
    rules_dir: Path | None = None
    # Loaded from rules_dir by ingestd.config.load (never written in ingestd.yaml).
    rules: tuple[Rule, ...] = ()

    @field_validator("rules_dir")
    @classmethod
    def _rules_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolved(value, info)

    def mailbox(self, name: str) -> Mailbox | None:
        for mailbox in self.mailboxes:
            if mailbox.name == name:
                return mailbox
        return None
