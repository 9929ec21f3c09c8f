"""What a new password must be: long enough, typed twice alike, not the address, not a common one.

After NIST SP 800-63B and the OWASP cheat sheets: length over composition rules, and a check against
passwords that attackers try first. The list is short and kept here (lower case, 12 characters or more:
shorter ones fail the length anyway); it catches the obvious, not every leaked password.
"""

from __future__ import annotations

from services.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 256
"""Argon2 takes any length; a cap keeps one request from hashing megabytes."""

COMMON = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789abc",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "aaaaaaaaaaaa",
        "abc123456789",
        "abcdefghijkl",
        "administrator",
        "adminadmin123",
        "changeme1234",
        "correcthorsebatterystaple",
        "football1234",
        "iloveyou1234",
        "letmein12345",
        "letmeinplease",
        "monkey123456",
        "password1234",
        "password12345",
        "password123456",
        "password!234",
        "passw0rd1234",
        "p@ssw0rd1234",
        "p@ssword1234",
        "qwerty123456",
        "qwertyuiop12",
        "qwertyuiopas",
        "qwertyuiop[]",
        "roundtable123",
        "roundtable2024",
        "roundtable2025",
        "roundtable2026",
        "sunshine1234",
        "superman1234",
        "trustno11234",
        "welcome12345",
        "welcome123456",
        "zaq12wsxcde3",
        "zxcvbnm12345",
        "fjalekalimi123",
        "fjalekalim123",
        "shqiperia123",
        "shqiperia1234",
        "tirana123456",
        "tirane123456",
    }
)

TOO_SHORT = "the new password must be at least 12 characters long"
TOO_LONG = "the new password must be at most 256 characters long"
NOT_THE_SAME = "the two passwords typed are not the same"
IS_THE_EMAIL = "the new password must not be your email address"
TOO_COMMON = "this password is one of the most common ones; choose another"


def check_new_password(password: str, again: str, *, email: str) -> str:
    """The new password, or InvalidInput saying what is wrong with it."""
    if password != again:
        raise InvalidInput(NOT_THE_SAME)
    if len(password) < MIN_LENGTH:
        raise InvalidInput(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        raise InvalidInput(TOO_LONG)
    if "\x00" in password:
        raise InvalidInput("the new password contains a NUL character; choose another")
    folded = password.strip().casefold()
    if folded == email.strip().casefold() or folded == email.split("@")[0].strip().casefold():
        raise InvalidInput(IS_THE_EMAIL)
    if folded in COMMON or len(set(folded)) <= 2:
        raise InvalidInput(TOO_COMMON)
    return password
