"""Numbers as a CSV or a person writes them: E.164 with phonenumbers, local numbers read in a default country."""
import re

import phonenumbers

from core.errors import DomainError

from .errors import CampaignError

_WRITTEN = re.compile(r"^\+?[0-9][0-9 ().\-]*$")


def to_e164(raw, default_country=None):
    """E.164 of `raw`, or DomainError(invalid_phone) saying why. Without a default country, digits without "+" are
    read as starting with the country code (as the messages API reads them)."""
    value = str(raw or "").strip()
    if not value:
        raise DomainError(CampaignError.INVALID_PHONE, "No phone number.")
    if not _WRITTEN.match(value):
        raise DomainError(CampaignError.INVALID_PHONE, "Only digits, spaces, dots, dashes and brackets are allowed.")
    region = None
    if value.startswith("+"):
        pass
    elif value.startswith("00"):
        value = "+" + value[2:]
    elif default_country:
        region = default_country
    else:
        value = "+" + value
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise DomainError(CampaignError.INVALID_PHONE, "Not a phone number; write it with its country code.") from None
    if not phonenumbers.is_valid_number(number):
        raise DomainError(CampaignError.INVALID_PHONE, "Not a valid phone number for its country.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def valid_country(code):
    return isinstance(code, str) and code.upper() in phonenumbers.SUPPORTED_REGIONS
