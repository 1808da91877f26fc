"""Checking a message's DKIM signatures ourselves (dkimpy), for mail no trusted MTA judged.

The key lookup is injectable: ``verify`` takes a ``lookup``, and without one
uses the module's ``dns_lookup`` (tests replace it; production asks DNS
through dnspython with the configured timeout).

A DNS server that does not answer is not a failed signature: the lookup
raises ``DnsUnavailable`` and the verdict is "not checked, for now"
(``deferred``), so that classification can retry the message later instead of
demoting an agent for good. A key that does not exist (NXDOMAIN, no TXT) is
an answer: the signature fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dkim as dkimpy
import dns.exception
import dns.resolver

from ingestd.authentication.alignment import aligned
from ingestd.errors import DnsUnavailable

# (name without the trailing dot, timeout in seconds) → the TXT record, or None when
# there is none; raises DnsUnavailable when no answer can be had now.
DnsLookup = Callable[[str, float], bytes | None]

# Signatures beyond these are not looked at: each costs a DNS lookup.
MAX_SIGNATURES = 5

_QUIET = logging.getLogger("ingestd.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def resolve_txt(name: str, timeout: float) -> bytes | None:
    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=timeout, raise_on_no_answer=False,
                                      search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except (dns.exception.Timeout, dns.resolver.NoNameservers,
            dns.resolver.NoResolverConfiguration) as exc:
        raise DnsUnavailable(f"DNS lookup of {name} failed: {type(exc).__name__}") from exc
    except dns.exception.DNSException:
        return None  # a name DNS cannot even ask for: no key
    for record in answer.rrset or ():
        strings: list[bytes] = list(getattr(record, "strings", ()))
        return b"".join(strings)
    return None


dns_lookup: DnsLookup = resolve_txt


@dataclass(frozen=True)
class DkimVerdict:
    verified: bool | None  # None: no signature, or DNS could not be asked
    why: str
    deferred: bool = False


def verify(raw: bytes, from_domain: str | None, *, timeout: float = 5.0,
           lookup: DnsLookup | None = None) -> DkimVerdict:
    """Whether a valid DKIM signature aligned with ``from_domain`` is on ``raw``."""
    use = lookup or dns_lookup

    def dnsfunc(name: bytes, timeout: float = timeout) -> bytes | None:
        return use(name.decode("ascii", "replace").rstrip("."), timeout)

    try:
        signer = dkimpy.DKIM(raw, logger=_QUIET, timeout=timeout)
        count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    except Exception as exc:  # dkimpy reads hostile input: any failure is "no verdict"
        return DkimVerdict(False, f"DKIM: message unreadable ({type(exc).__name__})")
    if count == 0:
        return DkimVerdict(None, "no DKIM signature")
    seen: list[str] = []
    deferred = False
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            valid = bool(signer.verify(idx=index, dnsfunc=dnsfunc))
        except DnsUnavailable:
            deferred = True
            seen.append(f"{_domain(signer)}: DNS did not answer")
            continue
        except Exception as exc:  # dkimpy's own errors, and its bugs on odd input
            seen.append(f"{_domain(signer)}: {type(exc).__name__}")
            continue
        domain = _domain(signer)
        if not valid:
            seen.append(f"d={domain} fails")
        elif b"l" in (signer.signature_fields or {}):
            # l= signs only the first bytes of the body: anyone may append to it.
            seen.append(f"d={domain} has a body length limit (l=), not counted")
        elif not aligned(domain, from_domain):
            seen.append(f"d={domain} valid but not aligned with {from_domain}")
        else:
            return DkimVerdict(True, f"DKIM signature d={domain} verified by ingestd")
    if deferred:
        return DkimVerdict(None, "DKIM not checked for now: " + "; ".join(seen), deferred=True)
    return DkimVerdict(False, "DKIM: " + "; ".join(seen))


def _domain(signer: dkimpy.DKIM) -> str:
    domain = getattr(signer, "domain", None)
    if isinstance(domain, bytes):
        return domain.decode("ascii", "replace").lower()
    return "?"
