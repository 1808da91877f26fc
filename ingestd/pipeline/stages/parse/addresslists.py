"""Address fields cut to their first thousand entries before any parser reads them.

mail-parser reads every address field (every occurrence, for its defect
report) one entry at a time, at 10-25 us an entry: it validates each one,
hands it to the stdlib's parser and writes a diagnostic for each it cannot
read. A 200 KB To of bare ';' is 200,000 entries and took 2 s; commas
between real addresses 0.4 s. The stdlib's ``getaddresses`` (our sender and
Reply-To reading) costs as much again. Linear, but no real message needs
it: the widest address field in the ~1,900 messages of the third-party
corpora holds 47 entries, and what is kept of them is only shown. So each
address field is cut after its thousandth separator and a defect says so; a
field with fewer separators is left as it was. The cut keeps that separator:
each entry kept reads as it read in the whole field (an entry ended by ';'
outside a group is one mail-parser refuses, with or without what follows).
"""

from __future__ import annotations

import itertools
import re
from email.message import Message

# What mail-parser and the stdlib read (mail-parser's ADDRESSES_HEADERS, and
# Sender, which our sender fallback reads).
_ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc", "delivered-to"})
MAX_ENTRIES = 1000
# Entries end at a comma, or at a ';' (the end of a group, and a separator
# Outlook users type). One inside a quoted name counts too: an upper bound
# is all the cut needs.
_SEPARATOR = re.compile(r"[,;]")


def bound_address_fields(tree: Message) -> list[str]:
    """Cut each address field of ``tree`` (in place) to its first entries; the defects."""
    defects: list[str] = []
    headers = vars(tree).get("_headers")
    if not isinstance(headers, list):
        return defects
    for index, (name, value) in enumerate(headers):
        # A field of fewer characters than MAX_ENTRIES cannot hold that many separators.
        if not isinstance(value, str) or len(value) < MAX_ENTRIES \
                or name.lower() not in _ADDRESS_FIELDS:
            continue
        last = next(itertools.islice(_SEPARATOR.finditer(value), MAX_ENTRIES - 1, None), None)
        if last is None:
            continue
        # The raw list itself: replace_header would only reach the first
        # field of a name, and mail-parser reads every one.
        headers[index] = (name, value[:last.end()])
        defects.append(f"{name} field cut to its first {MAX_ENTRIES} entries")
    return defects
