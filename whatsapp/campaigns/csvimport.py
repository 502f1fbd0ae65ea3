"""Reading a contacts CSV: a header row naming the columns (phone is required; name, tags and any other column,
which becomes a custom field), one contact a row. Every row is checked on its own: a bad or repeated number
rejects that row, with its reason, never the file. What makes the whole file unreadable (not UTF-8, no phone
column, more rows than the limit) is a 4xx with nothing imported."""
import csv
import io
import re
from dataclasses import dataclass, field

from django.conf import settings

from core.errors import DomainError

from .errors import CampaignError
from .phones import to_e164

PHONE_COLUMNS = ("phone", "phone_number", "number", "mobile", "whatsapp", "msisdn", "telephone")
TAG_SPLIT = re.compile(r"[;|,]")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_TAGS = 20
MAX_TAG_LENGTH = 40
MAX_FIELD_VALUE = 500


@dataclass
class Parsed:
    total: int = 0
    contacts: list = field(default_factory=list)  # {"row", "phone", "name", "tags", "fields"}
    rejected: list = field(default_factory=list)  # {"row", "phone", "reason"}


def max_rows():
    return settings.CAMPAIGN_IMPORT_MAX_ROWS


def max_bytes():
    return settings.CAMPAIGN_IMPORT_MAX_BYTES


def field_key(header):
    """A column's custom field name: lower case, words joined by _ ("Order ID" → order_id)."""
    key = re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")
    if key.startswith("field_"):
        key = key[len("field_"):]
    return key


def clean_tags(values):
    tags = []
    for value in values:
        tag = str(value).strip().lower()[:MAX_TAG_LENGTH]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


def decode(data):
    if len(data) > max_bytes():
        raise DomainError(CampaignError.CSV_TOO_LARGE, f"The file is larger than {max_bytes() // 1_000_000} MB; "
                                                       "split it into several imports.", {"max_bytes": max_bytes()})
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError(CampaignError.INVALID_ENCODING,
                          f"The file is not UTF-8 (byte {exc.start} cannot be read). Save it as 'CSV UTF-8' and "
                          "import it again.", {"position": exc.start}) from None
    if "\x00" in text:
        raise DomainError(CampaignError.INVALID_ENCODING, "The file holds NUL characters: it is not a text CSV.")
    return text


def parse(data, *, default_country=None):
    """Parsed rows of the CSV bytes `data`; 4xx for a file that cannot be read as a whole."""
    text = decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DomainError(CampaignError.INVALID_CSV, f"The file is not a readable CSV: {exc}.") from None
    if not header or not any(h.strip() for h in header):
        raise DomainError(CampaignError.MISSING_PHONE_COLUMN, "The file is empty: the first row must name the "
                                                              "columns, one of them phone.")
    keys = [field_key(h) for h in header]
    phone_at = next((i for i, k in enumerate(keys) if k in PHONE_COLUMNS), None)
    if phone_at is None:
        raise DomainError(CampaignError.MISSING_PHONE_COLUMN,
                          "No phone column: name one column phone (or number, mobile, whatsapp).",
                          {"columns": header[:50]})
    name_at = keys.index("name") if "name" in keys else None
    tags_at = keys.index("tags") if "tags" in keys else None
    field_columns = [(i, k) for i, k in enumerate(keys)
                     if i not in (phone_at, name_at, tags_at) and FIELD_NAME.match(k)]
    parsed, seen = Parsed(), {}
    limit = max_rows()
    try:
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            parsed.total += 1
            if parsed.total > limit:
                raise DomainError(CampaignError.CSV_TOO_LARGE,
                                  f"The file has more than {limit} contacts; split it into several imports.",
                                  {"max_rows": limit})
            raw = row[phone_at] if phone_at < len(row) else ""
            try:
                phone = to_e164(raw, default_country)
            except DomainError as exc:
                parsed.rejected.append({"row": number, "phone": raw[:40], "reason": exc.message})
                continue
            if phone in seen:
                parsed.rejected.append({"row": number, "phone": raw[:40],
                                        "reason": f"The same number as row {seen[phone]}."})
                continue
            seen[phone] = number
            cell = (lambda at: row[at].strip() if at is not None and at < len(row) else "")
            parsed.contacts.append({
                "row": number, "phone": phone, "name": cell(name_at)[:255],
                "tags": clean_tags(TAG_SPLIT.split(cell(tags_at))) if cell(tags_at) else [],
                "fields": {key: cell(at)[:MAX_FIELD_VALUE] for at, key in field_columns if cell(at)},
            })
    except csv.Error as exc:
        raise DomainError(CampaignError.INVALID_CSV, f"The file is not a readable CSV: {exc}.") from None
    return parsed
