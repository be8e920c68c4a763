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
# Cheap necessary conditions, one per pattern (each led by a character class, which the regex
# engine scans for fast, where the patterns open with a look-behind it must try at every position):
# a captured body is full of short numbers (token counts, timestamps) that none of them can match.
# All four number patterns at once: a card, an SSN or a North American phone is a run of 11+
# digits and separators; the rest open with "+", "(ddd)" or an IBAN's country and check digits.
_NUMBER_HINT = re.compile(r"\d[\d .\-]{9,}\d|\+\d|\(\d{3}\)|[A-Z]{2}\d{2}")
_CARD_HINT = re.compile(r"\d(?:[ -]?\d){12}")
_IBAN_HINT = re.compile(r"[A-Z]{2}\d{2}")
_SSN_HINT = re.compile(r"\d{3}-\d{2}-\d{4}")
_PHONE_HINT = re.compile(r"\+\d|\d{3}[.-]\d{3}[.-]\d{4}|\(\d{3}\)")


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
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    if not _NUMBER_HINT.search(text):
        return text
    if _IBAN_HINT.search(text):
        text = _IBAN.sub(_iban, text)
    if _CARD_HINT.search(text):
        text = _CARD.sub(_card, text)
    if _SSN_HINT.search(text):
        text = _SSN.sub(_ssn, text)
    if _PHONE_HINT.search(text):
        text = _PHONE.sub("[PHONE]", text)
    return text
