"""Masking personal data in captured bodies: emails, phone numbers, payment cards, IBANs, US SSNs.

:func:`mask_pii` replaces each match with a typed mask (``[EMAIL]``, ``[PHONE]``, ``[CARD]``,
``[IBAN]``, ``[SSN]``). Number-shaped patterns are checked before they are masked, so ordinary
numbers survive: a card number must pass the Luhn check (13 to 19 digits, spaces or dashes between
groups), an IBAN its ISO 13616 mod-97 check, an SSN the SSA's rules (no area 000, 666 or 9xx, no
group 00, no serial 0000). A phone number is a ``+`` international number or a North American
``(555) 123-4567`` / ``555-123-4567`` shape: bare digit runs (ids, timestamps) are left alone.

The text is usually JSON (a captured body, serialised); the patterns never swallow a quote or a
backslash, so the masked text stays valid JSON.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"
    r"|(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4})(?![\w])"
)
# One scan for the cheap question "could there be anything to mask?": a body of plain prose with
# no '@' and no run of digits is returned untouched at the cost of one search.
_MAYBE = re.compile(r"@|\d{2}")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = iban.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in moved))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    # All one digit (0000 0000 ...) passes Luhn but is a placeholder, not a card.
    if 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits):
        return "[CARD]"
    return m.group(0)


def _iban(m: re.Match[str]) -> str:
    return "[IBAN]" if iban_ok(m.group(0)) else m.group(0)


def _ssn(m: re.Match[str]) -> str:
    return "[SSN]" if ssn_ok(m.group(1), m.group(2), m.group(3)) else m.group(0)


def mask_pii(text: str) -> str:
    """``text`` with emails, phone numbers, card numbers, IBANs and US SSNs masked."""
    if not _MAYBE.search(text):
        return text
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_iban, text)
    text = _CARD.sub(_card, text)
    text = _SSN.sub(_ssn, text)
    return _PHONE.sub("[PHONE]", text)
