"""The sender: the best address the From header holds, even when it is malformed.

mail-parser discards a whole From header on small faults that real mailers
make: an address only in quotes, a trailing dot in the domain, ``Name
addr@host`` without angle brackets, a comment where the address belongs, an
encoded display name with a ``:`` or ``,`` in it. An agent seeing "no
sender" loses time, and a wrong sender makes the wrong user, so the address
is recovered from the header itself (and a defect says how).

Several From headers are a known way to impersonate: the first that yields
an address is shown, but the sender is marked doubtful, and classification
then never matches it to an agent or a user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import getaddresses

from ingestd.mailtext import clean_text, decode_words

# RFC 5321 caps a path at 256 octets; nothing longer names a real sender.
MAX_ADDRESS = 254
# How much of a From value is read: real ones are a few hundred characters,
# and a header of megabytes must not make every search below scan all of it.
_MAX_VALUE = 2048
# An address as it appears in free text: no space, bracket, quote or separator.
# It may only start where such a word starts (the look-behind): otherwise each
# position inside a long word without "@" would scan the rest of it again.
_LOOSE_ADDRESS = re.compile(
    r"""(?<![^\s<>"'(),;:\[\]])[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]@]+""")
_COMMENT = re.compile(r"\([^()]*\)")
# The same text as "<[^<>]*@[^<>]*>", but only the first "@" is tried as the
# split: with many "@" and no ">" the other form backtracks over each pair.
_BRACKETED = re.compile(r"<([^<>@]*@[^<>]*)>")
_BRACKETED_WORD = re.compile(r"<\s*([A-Za-z0-9][A-Za-z0-9._+-]*)\s*>")
_SPACE = re.compile(r"\s")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_C1 = re.compile("[\x80-\x9f]")


@dataclass
class SenderFields:
    name: str | None = None
    address: str | None = None
    doubtful: bool = False
    defects: list[str] = field(default_factory=list)


def read_sender(values: list[str], parsed: tuple[str, str] | None) -> SenderFields:
    """The sender from the From ``values`` (raw, 8-bit already text) and mail-parser's pair."""
    sender = SenderFields()
    if len(values) > 1:
        sender.doubtful = True
        sender.defects.append(f"{len(values)} From headers; the sender is not trusted")
    if parsed is not None and _sound(parsed[1], values[:1]):
        # Encoded words inside a quoted name ("=?ISO-2022-JP?B?...?=") are
        # forbidden by RFC 2047 but common, and left encoded by the parsers.
        sender.address = _normalised(parsed[1])
        sender.name = clean_text(decode_words(_display_name(parsed[0], values[0],
                                                            sender.address))).strip() or None
        return _bounded(sender)
    for value in values:
        name, address, how = recover(value)
        if address:
            sender.name, sender.address = name, address
            sender.defects.append(f"From header malformed; {how}: {address[:100]}")
            return _bounded(sender)
    if values and parsed is not None and parsed[1]:
        # Nothing better: keep what mail-parser made of it, as before.
        sender.name = clean_text(parsed[0]).strip() or None
        sender.address = _normalised(parsed[1])
    return _bounded(sender)


def address_pairs(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses``, or nothing where it gives up.

    Its comment reader recurses once per nested "(": a header of a thousand
    opening parentheses raised RecursionError out of the parser.
    """
    try:
        return getaddresses(values)
    except RecursionError:
        return []


# Read, in this order, when no From header yields an address with a domain.
FALLBACK_HEADERS = ("Sender", "Reply-To")


def usable(address: str | None) -> bool:
    """An address a reply can go to: one with a domain."""
    return address is not None and "@" in address


def read_fallback(sender: SenderFields, headers: dict[str, list[str]]) -> str:
    """Replace an unusable From with the first of Sender or Reply-To that has an address.

    Returns the header the sender now comes from ("From" when nothing better
    was found). Bounces and some mailing-list software leave From empty or
    domainless but still say who sent the message.
    """
    if usable(sender.address):
        return "From"
    for header in FALLBACK_HEADERS:
        for value in headers.get(header, [])[:1]:
            name, address, _ = recover(value)
            if usable(address):
                missing = "no From header" if not headers.get("From") else "no usable From"
                sender.defects.append(f"{missing}; sender read from {header}")
                sender.name, sender.address = name, address
                _bounded(sender)
                return header
    return "From"


def recover(value: str) -> tuple[str | None, str | None, str]:
    """(display name, address, how) from one From value, as well as it can be read."""
    value = value[:_MAX_VALUE]
    # Parsed before decoding, so that ":" or "," inside an encoded word
    # cannot split the display name (RFC 2047 words are decoded afterwards).
    for name, address in address_pairs([value]):
        address = _normalised(address)
        if "@" in address and address in _plain(value) and not _SPACE.search(address):
            return _name(name, address), address, "address parsed"
    bracketed = _BRACKETED.search(value)
    if bracketed is not None and _SPACE.search(bracketed.group(1).rpartition("@")[0]):
        # <john smith@example.com>: the mailbox the sender meant, quoted as
        # RFC 5322 3.4.1 writes a local part with spaces.
        local, _, domain = bracketed.group(1).strip().rpartition("@")
        local = " ".join(clean_text(local).strip().strip('"').split()).lower()
        address = f'"{local}"@{clean_text(domain).strip().rstrip(".").lower()}'
        rest = value.replace(bracketed.group(0), " ")
        return _name(rest, address), address, "spaces in the local part quoted"
    found = _LOOSE_ADDRESS.search(_unquoted(value))
    if found is not None:
        address = _normalised(found.group(0))
        rest = _unquoted(value).replace(found.group(0), " ")
        return _name(rest, address), address, "address found in free text"
    bracketed_word = _BRACKETED_WORD.search(value)
    if bracketed_word is not None:
        # "Mail Delivery Subsystem <MAILER-DAEMON>": a mailbox with no domain.
        word_address = bracketed_word.group(1).lower()
        rest = value.replace(bracketed_word.group(0), " ")
        return _name(rest, word_address), word_address, "address without a domain"
    bare = _COMMENT.sub(" ", value).strip().strip("<>").strip()
    word = _WORD.fullmatch(bare)
    if word is not None:
        # "MAILER-DAEMON (Mail Delivery System)": a name with no domain.
        comment = _COMMENT.search(value)
        label = comment.group(0)[1:-1] if comment else ""
        return _name(label, bare.lower()), bare.lower(), "address without a domain"
    return None, None, "no address"


def _display_name(parsed: str, value: str, address: str) -> str:
    """mail-parser's display name, unless it read an encoded word as the wrong charset.

    It reads ``=?iso-8859-1?...?=`` as Latin-1, making C1 controls of what the
    sender meant as windows-1252 (“ ” € …); the header's own words, decoded
    by ``decode_words``, give the name the sender saw.
    """
    if _C1.search(parsed) is None:
        return parsed
    for name, found in address_pairs([value[:_MAX_VALUE]]):
        if _normalised(found) == address and name:
            return name
    return parsed


def _sound(address: str, values: list[str]) -> bool:
    """mail-parser's address is one the header really holds (not glued from its words)."""
    address = _normalised(address)
    return "@" in address and not address.endswith(".") and any(
        address in _plain(v[:_MAX_VALUE]) for v in values)


def _plain(value: str) -> str:
    return decode_words(value).lower()


def _unquoted(value: str) -> str:
    return decode_words(value).replace('"', " ")


def _normalised(address: str) -> str:
    """Lower case, no brackets or quotes around it, no trailing dot on the domain.

    Quotes go only when one pair wraps the whole address ("a@example.com"),
    or when a quote at either end has no partner: in ``"a b"@example.com``
    they belong to the local part (RFC 5322 3.4.1).
    """
    text = clean_text(address).strip().strip("<> ").lower()
    for quote in "\"'":
        if text.count(quote) == 2 and text[0] == text[-1] == quote:
            text = text[1:-1]
        elif text.count(quote) == 1:
            text = text.strip(quote)
        text = text.strip().strip("<> ")
    local, at, domain = text.rpartition("@")
    if at:
        # "a@example.com." names the same host as "a@example.com".
        text = f"{local}@{domain.rstrip('.')}"
    return text


def _name(name: str, address: str) -> str | None:
    text = clean_text(decode_words(name)).replace('"', " ").strip(" <>,;")
    text = " ".join(text.split())
    return text if text and text.lower() != address else None


def _bounded(sender: SenderFields) -> SenderFields:
    if sender.address is not None and "@" not in sender.address and not any(
            d.endswith(f"address without a domain: {sender.address[:100]}")
            for d in sender.defects):
        sender.defects.append(f"From address without @: {sender.address[:100]}")
    if sender.address is not None and len(sender.address) > MAX_ADDRESS:
        sender.defects.append(f"From address of {len(sender.address)} characters ignored")
        sender.address = None
    return sender
