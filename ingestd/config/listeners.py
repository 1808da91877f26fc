"""Settings of the daemon's two listeners: SMTP intake and the HTTP API.

``settings`` imports these into the shape of ``ingestd.yaml`` (and re-exports them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ingestd.config.pulls import resolved
from ingestd.networks import Network, parse_networks


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SmtpTlsSettings(_Frozen):
    """STARTTLS: the server certificate (PEM, leaf first, then intermediates) and its key.

    Both files are read at start-up and again on every reload (SIGHUP), so a renewed
    certificate needs no restart; relative paths are relative to the configuration file.
    """

    certificate_file: Path
    key_file: Path
    # False (the default), as an MX must: MTAs that do not do TLS still deliver in
    # clear. True refuses mail commands before STARTTLS (530 5.7.0), for a port only
    # known relays use.
    require_starttls: bool = False

    @field_validator("certificate_file", "key_file")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        path = resolved(value, info)
        assert path is not None
        return path


class SmtpSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    hostname: str = "ingestd.localhost"
    max_message_size: int = Field(default=26_214_400, ge=1024)
    max_recipients: int = Field(default=50, ge=1, le=10_000)
    # Each of these ends a session with 421 4.4.2. RFC 5321 4.5.3.2.7: a server
    # should wait at least 5 minutes for the next command (the default; lower
    # values are accepted, for tests and for sites under attack).
    idle_timeout_seconds: float = Field(default=300, gt=0)
    # The whole DATA transfer: 25 MiB (max_message_size) at a slow 16 KB/s
    # link takes 25 * 1024 * 1024 / 16,000 = 1,638 s; 1,800 s leaves room.
    data_timeout_seconds: float = Field(default=1800, gt=0)
    # The whole session, so that a client sending NOOP every few seconds cannot
    # hold a connection slot for ever; longer than one maximum-size DATA.
    session_timeout_seconds: float = Field(default=3600, gt=0)
    # Deprecated name of idle_timeout_seconds, still accepted (older configs).
    timeout_seconds: float | None = Field(default=None, gt=0)
    # Beyond these, a new connection gets 421 4.7.0 and is closed (RFC 5321 4.3.2:
    # the client retries later). Bounds memory and file descriptors under floods.
    max_connections: int = Field(default=500, ge=1, le=100_000)
    max_connections_per_ip: int = Field(default=50, ge=1, le=100_000)
    # Messages that may share one intake commit; 1 turns group commit off.
    commit_batch_max: int = Field(default=200, ge=1, le=10_000)
    # Message bytes all sessions may hold in memory at once (being received or
    # waiting for their commit); a DATA that would exceed it gets 452 4.3.1.
    max_inflight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    # Messages waiting for their commit; beyond this a sender gets 451 at once
    # instead of joining a queue the database cannot drain (memory stays bounded).
    max_queued_messages: int = Field(default=1000, ge=1, le=1_000_000)
    # After this many 5xx replies in one session (refused recipients, unknown
    # commands), 421 4.7.0 and the connection is closed; 0 turns it off.
    max_errors: int = Field(default=20, ge=0, le=100_000)
    # Greet only after this long; a client that talks first gets 421 4.7.0
    # (Postfix postscreen's pregreet test). 0: greet at once, no test.
    greet_delay_ms: int = Field(default=0, ge=0, le=30_000)
    # On SIGTERM: how long sessions in the middle of DATA may take to finish
    # (and get their 250 or 451) before the daemon exits. Idle sessions get
    # 421 at once. Keep it below the unit's TimeoutStopSec.
    drain_seconds: float = Field(default=10, ge=0, le=300)
    # None: no STARTTLS offered.
    tls: SmtpTlsSettings | None = None
    # Client networks (CIDR) that may connect; empty: any. Others get 554 5.7.1
    # instead of the greeting and are closed before they hold a connection slot.
    allowed_networks: tuple[Network, ...] = ()

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        # strict: "10.0.0.1/8" is more likely a typo than a wish for 10.0.0.0/8.
        return parse_networks(value, strict=True)

    @model_validator(mode="after")
    def _deprecated_timeout(self) -> SmtpSettings:
        if self.timeout_seconds is not None and "idle_timeout_seconds" not in self.model_fields_set:
            object.__setattr__(self, "idle_timeout_seconds", self.timeout_seconds)
        return self


class HealthListen(_Frozen):
    """Where /healthz, /readyz and /metrics are served when not beside the API."""

    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class HttpSettings(_Frozen):
    """The daemon's HTTP API (and /healthz, /readyz, /metrics): on loopback unless told
    otherwise."""

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 picks a free port (logged at start-up): for tests and for several daemons on one host.
    port: int = Field(default=8025, ge=0, le=65535)
    # Health, readiness and metrics on their own address (a monitoring network, say)
    # instead of the API's; they then are not served on the API's port.
    health_listen: HealthListen | None = None
