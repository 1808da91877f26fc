"""Is the From address proven? The verdict of the receiving MTAs we trust, else our own DKIM check.

Which ``Authentication-Results`` fields count depends on how the message came:

- SMTP: the configured ``trusted_authserv_ids``, and only when the client that
  connected is one of ``trusted_relays``: a client connecting directly could
  have written the topmost field itself.
- stdin (``ingestd ingest -`` run by the MTA as a pipe) and files an admin
  imports: the configured ids. The MTA or the admin handed the bytes over,
  as a trusted relay does.
- IMAP: the configured ids (the mail server's own MTA wrote them).
- Gmail: the configured ids and ``mx.google.com``.
- Microsoft 365 (Graph): the configured ids, and Exchange Online's own field,
  which names no authserv-id at all (``Authentication-Results: spf=pass ...``)
  or one under ``protection.outlook.com``. Exchange Online renames the fields
  a message arrived with to ``Authentication-Results-Original``, so the
  topmost field is its own.

Of those, only the topmost run of adjacent fields is read (RFC 8601 section 5).
Authenticated: DMARC passes for the From domain, or DKIM passes for a domain
aligned with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from email.policy import compat32

from ingestd.addresses import domain_of
from ingestd.authentication import dkim
from ingestd.authentication.alignment import aligned
from ingestd.authentication.results import AuthenticationResults, parse_all, topmost_fields
from ingestd.config.authentication import SenderAuthentication, peer_ip
from ingestd.mailbytes import header_block
from ingestd.mailtext import bytes_text

GMAIL_AUTHSERV_ID = "mx.google.com"
MICROSOFT_AUTHSERV_SUFFIX = "protection.outlook.com"


@dataclass(frozen=True)
class Verdict:
    verified: bool | None  # None: not checked (nothing to judge by, or DNS for now)
    why: str
    deferred: bool = False  # DNS did not answer: a later attempt may judge


@dataclass(frozen=True)
class Trust:
    """Whose Authentication-Results count for one message."""

    ids: frozenset[str]
    suffix: str | None = None  # ids under this domain count too
    anonymous: bool = False  # a field naming no authserv-id counts (Exchange Online)
    refused: str | None = None  # why none count

    def accepts(self, results: AuthenticationResults) -> bool:
        if self.refused:
            return False
        authserv_id = results.authserv_id
        if authserv_id is None:
            return self.anonymous
        if authserv_id in self.ids:
            return True
        return self.suffix is not None and authserv_id.endswith("." + self.suffix)


def trust_for(policy: SenderAuthentication, source: str, peer: str | None) -> Trust:
    ids = frozenset(policy.trusted_authserv_ids)
    if source == "smtp":
        if policy.relay_trusted(peer):
            return Trust(ids)
        ip = peer_ip(peer)
        return Trust(frozenset(), refused=f"SMTP client {ip or 'unknown'} is not a trusted relay")
    if source in ("stdin", "file", "imap"):
        return Trust(ids)
    if source == "gmail":
        return Trust(ids | {GMAIL_AUTHSERV_ID})
    if source == "graph":
        return Trust(ids, suffix=MICROSOFT_AUTHSERV_SUFFIX, anonymous=True)
    return Trust(frozenset(), refused=f"source {source or 'unknown'} is not trusted")


def judge(raw: bytes, from_address: str | None, policy: SenderAuthentication, *,
          source: str, peer: str | None, lookup: dkim.DnsLookup | None = None) -> Verdict:
    """The verdict on ``raw``'s From address (``from_address``, as classification reads it)."""
    from_domain = domain_of(from_address) if from_address and "@" in from_address else None
    trust = trust_for(policy, source, peer)
    fields = parse_all(topmost_fields(_headers(raw)))
    trusted = [f for f in fields if trust.accepts(f)]
    if trusted:
        return from_results(trusted, from_domain)
    if policy.verify_dkim:
        checked = dkim.verify(raw, from_domain, timeout=policy.dns_timeout_seconds,
                              lookup=lookup)
        if checked.verified is not None or checked.deferred:
            return Verdict(checked.verified, f"sender {_word(checked.verified)}: {checked.why}",
                           deferred=checked.deferred)
    why = trust.refused or "no Authentication-Results from a trusted authserv-id"
    if policy.verify_dkim:
        why += ", no DKIM signature"
    return Verdict(None, f"sender not checked: {why}")


def from_results(fields: Sequence[AuthenticationResults], from_domain: str | None) -> Verdict:
    """Authenticated when one trusted field says DMARC passed for the From domain, or DKIM
    passed for a domain aligned with it."""
    writers = ", ".join(sorted({f.writer for f in fields}))
    if from_domain is None:
        return Verdict(False, f"sender not verified: no From domain (Authentication-Results "
                              f"by {writers})")
    seen: list[str] = []
    for results in fields:
        for result in results.results:
            if result.method not in ("dmarc", "dkim"):
                continue
            domain = result.domain()
            if result.result != "pass":
                seen.append(str(result))
            elif result.method == "dmarc" and domain in (None, from_domain):
                return Verdict(True, f"sender verified: dmarc=pass (Authentication-Results "
                                     f"by {results.writer})")
            elif result.method == "dkim" and aligned(domain, from_domain):
                return Verdict(True, f"sender verified: dkim=pass header.d={domain} "
                                     f"(Authentication-Results by {results.writer})")
            else:
                seen.append(f"{result} not aligned with {from_domain}"
                            if result.method == "dkim" else f"{result} for {domain}")
    found = "; ".join(seen) or "no DMARC or DKIM result"
    return Verdict(False, f"sender not verified: {found} (Authentication-Results by {writers})")


def _headers(raw: bytes) -> list[tuple[str, str]]:
    headers = HeaderParser(policy=compat32).parsestr(bytes_text(header_block(raw)))
    return [(name, " ".join(str(value).split())) for name, value in headers.items()]


def _word(verified: bool | None) -> str:
    return {True: "verified", False: "not verified", None: "not checked"}[verified]
