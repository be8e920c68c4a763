"""PII masking for captured bodies: what is masked, and the look-alikes that are not."""

from __future__ import annotations

import orjson
import pytest

from fluxway.pii import iban_ok, luhn_ok, mask_pii


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to bob.jones+tag@mail.example.co.uk now", "write to [EMAIL] now"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("card 5500-0000-0000-0004.", "card [CARD]."),
        ("amex 378282246310005", "amex [CARD]"),
        ("iban DE89 3704 0044 0532 0130 00 thanks", "iban [IBAN] thanks"),
        ("iban GB82WEST12345698765432", "iban [IBAN]"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("call +44 20 7946 0958 today", "call [PHONE] today"),
        ("call (555) 123-4567 or 555-987-6543", "call [PHONE] or [PHONE]"),
    ],
)
def test_masks_personal_data(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 failed",  # 16 digits, Luhn fails: not a card
        "id 1234567890123456",  # Luhn fails
        "zeros 0000 0000 0000 0000",  # passes Luhn, but a placeholder
        "ts 1733572800123",  # a millisecond timestamp (Luhn fails)
        "iban DE89370400440532013001",  # mod-97 fails
        "ssn 000-12-3456 and 666-12-3456 and 900-12-3456 and 123-00-4567",  # never issued
        "version 1.2.3, 42 apples, 2026-12-07",
        "not an email: user@localhost",
    ],
)
def test_leaves_look_alikes_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE89")


def test_masked_json_stays_json() -> None:
    body = {"messages": [{"role": "user", "content": "mail a@b.io, card 4111-1111-1111-1111\nssn 123-45-6789"}]}
    out = mask_pii(orjson.dumps(body).decode())
    content = orjson.loads(out)["messages"][0]["content"]
    assert "a@b.io" not in content and "[EMAIL]" in content and "[CARD]" in content


_FRAGMENTS = (
    "bob@example.com", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432", "123-45-6789", "000-12-3456", "+44 20 7946 0958", "+1 (555) 123-4567", "(555) 123-4567",
    "555-123-4567", "555.123.4567", "1700000000", "20", "16", "-", " ", ".", "+", "(", ")", "AB12", "x", "\"", "@",
    "2024-01-31", "v1.2.3",
)


def _reference(text: str) -> str:
    from fluxway import pii

    text = pii._EMAIL.sub("[EMAIL]", text)
    text = pii._IBAN.sub(pii._iban, text)
    text = pii._CARD.sub(pii._card, text)
    text = pii._SSN.sub(pii._ssn, text)
    return pii._PHONE.sub("[PHONE]", text)


def test_fast_path_masks_what_the_patterns_mask() -> None:
    """The cheap checks that skip a pattern never skip one that would have matched."""
    import random

    rng = random.Random(11)
    for _ in range(3000):
        text = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 10)))
        assert mask_pii(text) == _reference(text), text
