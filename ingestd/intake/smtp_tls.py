"""STARTTLS for the SMTP door: the server certificate, and its reload on SIGHUP.

A session takes the TLS context current when it connects and keeps it to its end;
a reload builds a new context for the sessions after it. A certificate that cannot
be loaded at start-up stops the daemon; on a reload it keeps the old one (the
renewal is half-written, or the key does not match yet) and says why.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from typing import NoReturn

import structlog

from ingestd.config.listeners import SmtpTlsSettings
from ingestd.errors import CertificateUnusable
from ingestd.intake.smtp_replies import emit

log = structlog.get_logger("ingestd.smtp")


@dataclass(frozen=True)
class ServerTls:
    """What a new session is given: the context, and whether TLS is required first."""

    context: ssl.SSLContext
    require_starttls: bool
    fingerprint: str  # SHA-256 of the leaf certificate, as logged


def _encrypted_key() -> NoReturn:
    # Without a password callback OpenSSL would prompt on a terminal, and under
    # systemd there is none: the start would fail obscurely or hang.
    raise CertificateUnusable("the key is encrypted; give ingestd an unencrypted key "
                              "readable only by its user")


def load_server_tls(settings: SmtpTlsSettings) -> ServerTls:
    """A new server context from the files as they are now, or ``CertificateUnusable``."""
    where = f"{settings.certificate_file} / {settings.key_file}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The client's certificate is not asked for: an MX has no list of senders' CAs.
    context.verify_mode = ssl.CERT_NONE
    try:
        # Read first so that a missing or unreadable file is named (OpenSSL does not).
        leaf = settings.certificate_file.read_text(encoding="ascii", errors="replace")
        settings.key_file.read_bytes()
        context.load_cert_chain(settings.certificate_file, settings.key_file,
                                password=_encrypted_key)
    except CertificateUnusable as exc:
        raise CertificateUnusable(f"{where}: {exc}") from exc
    except ssl.SSLError as exc:
        raise CertificateUnusable(f"{where}: {exc.reason or exc}") from exc
    except OSError as exc:
        raise CertificateUnusable(f"{exc.filename or where}: {exc.strerror or exc}") from exc
    return ServerTls(context, settings.require_starttls, _leaf_fingerprint(leaf))


def _leaf_fingerprint(pem: str) -> str:
    end = "-----END CERTIFICATE-----"
    first = pem[:pem.find(end) + len(end)] if end in pem else ""
    try:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()
    except ValueError:
        return "?"


class ServerCertificate:
    """The TLS a new session gets (None: no STARTTLS offered), replaced by ``reload``."""

    def __init__(self, settings: SmtpTlsSettings | None) -> None:
        self.current = load_server_tls(settings) if settings is not None else None
        if self.current is not None:
            emit(log.info, "smtp.tls_loaded", fingerprint=self.current.fingerprint,
                 certificate_file=str(settings.certificate_file) if settings else None)

    def reload(self, settings: SmtpTlsSettings | None) -> bool:
        """Re-read the files (also when their names did not change); False: old one kept."""
        if settings is None:
            if self.current is not None:
                emit(log.warning, "smtp.tls_turned_off")
            self.current = None
            return True
        try:
            fresh = load_server_tls(settings)
        except CertificateUnusable as exc:
            emit(log.error, "smtp.tls_reload_failed", error=str(exc),
                 kept=self.current.fingerprint if self.current else None)
            return False
        emit(log.info, "smtp.tls_reloaded", fingerprint=fresh.fingerprint,
             changed=self.current is None or fresh.fingerprint != self.current.fingerprint,
             certificate_file=str(settings.certificate_file))
        self.current = fresh
        return True
