"""Phone numbers as every app writes them: E.164 ("+14155550123"), checked with phonenumbers.

A number is written with digits and the usual separators only: phonenumbers alone would read letters as a keypad
("+1415abc0123" → +14152220123), which sends to someone nobody meant.
"""
import re

import phonenumbers

from .errors import DomainError, ErrorCode

HINT = "Enter the number in international format, with the country code, e.g. +14155550123."
_WRITTEN = re.compile(r"^\+?[0-9][0-9 ().\-]*$")
# What the OpenAPI schema says a number looks like: 7 to 17 digits with the usual separators, a "+" in front, blanks
# around. A number that looks so but exists nowhere (phonenumbers says) is still refused, with its own code.
PATTERN = r"^\s*\+?[0-9](?:[ ().\-]*[0-9]){6,16}\s*$"


class PhoneError(ErrorCode):
    INVALID_PHONE = "invalid_phone", 400


def normalize_phone(value, *, code=PhoneError.INVALID_PHONE, digits_mean_international=False):
    """E.164 of `value`, or DomainError(`code`) saying how to write the number. With
    `digits_mean_international`, digits without a "+" are read as starting with the country code (how the API
    takes recipients)."""
    value = str(value or "").strip()
    if not _WRITTEN.match(value):
        raise DomainError(code, f"A phone number holds digits only (spaces, dots, dashes and brackets "
                                f"allowed). {HINT}")
    if digits_mean_international and not value.startswith("+"):
        value = f"+{value}"
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise DomainError(code, HINT) from None
    if not phonenumbers.is_valid_number(number):
        raise DomainError(code, f"That is not a valid phone number. {HINT}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
