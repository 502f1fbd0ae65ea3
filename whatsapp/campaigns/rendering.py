"""Templates' variables and their rendering for one recipient.

  {{name}} {{first_name}} {{phone}}    the contact's
  {{field.order_id}}                   one of the contact's custom fields
  {{name|friend}}                      with a default for an empty value (the template's `defaults` give others)

A template may have variations (other phrasings); each recipient gets one, picked from the campaign and the number
so that a retry renders the same text, and neighbours in the list get different ones.
"""
import hashlib
import re

from core.errors import DomainError

from .csvimport import FIELD_NAME
from .errors import CampaignError

VARIABLE = re.compile(r"\{\{\s*([^{}|]*?)\s*(?:\|([^{}]*))?\}\}")
SIMPLE = ("name", "first_name", "phone")
MAX_VARIATIONS = 10
MAX_DEFAULT = 200


def is_known(variable):
    if variable in SIMPLE:
        return True
    return variable.startswith("field.") and bool(FIELD_NAME.match(variable[len("field."):]))


def variables_of(text):
    """The variables `text` names, in order; 400 unknown_variable / invalid_template for one that is not."""
    found = []
    for match in VARIABLE.finditer(text):
        name = match.group(1)
        if not is_known(name):
            raise DomainError(CampaignError.UNKNOWN_VARIABLE,
                              f"Unknown variable {{{{{name}}}}}: use {{{{name}}}}, {{{{first_name}}}}, {{{{phone}}}} or "
                              "{{field.<custom field>}}.", {"variable": name})
        if name not in found:
            found.append(name)
    rest = VARIABLE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise DomainError(CampaignError.INVALID_TEMPLATE, "A variable is not closed: write {{name}}.")
    return found


def values_for(contact):
    """What the variables of `contact` (an AudienceContact, or a dict with phone/name/fields) are."""
    if isinstance(contact, dict):
        phone, name, fields = contact.get("phone", ""), contact.get("name", ""), contact.get("fields") or {}
    else:
        phone, name, fields = contact.phone, contact.name, contact.fields
    values = {"name": name or "", "first_name": (name or "").split(" ")[0], "phone": phone or ""}
    for key, value in (fields or {}).items():
        values[f"field.{key}"] = str(value)
    return values


def render(text, values, defaults=None):
    defaults = defaults or {}

    def replace(match):
        name, inline = match.group(1), match.group(2)
        value = values.get(name, "")
        if not str(value).strip():
            value = inline if inline is not None else defaults.get(name, "")
        return str(value)

    rendered = VARIABLE.sub(replace, text)
    return re.sub(r"[ \t]{2,}", " ", rendered).strip()


def pick(count, campaign_id, phone):
    """The variation (0 … count-1) of this recipient: the same on every call."""
    if count <= 1:
        return 0
    digest = hashlib.sha256(f"{campaign_id}:{phone}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % count


def texts_of(template):
    return [template.body, *template.variations]


def render_for(template, values, campaign_id=0):
    """(variation index, rendered text) of `template` for a recipient with these `values`."""
    texts = texts_of(template)
    index = pick(len(texts), campaign_id, values.get("phone", ""))
    return index, render(texts[index], values, template.defaults)
