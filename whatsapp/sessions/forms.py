"""Forms of the session pages. They only parse; whatsapp.sessions.actions decides (names, limits, state)."""
from django import forms
from django.utils.text import slugify

from core.errors import DomainError
from core.phones import normalize_phone

from .actions import NAME_RE


class SessionCreateForm(forms.Form):
    label = forms.CharField(max_length=120, required=False, label="Label",
                            help_text='What your team calls it, e.g. "Front desk".',
                            widget=forms.TextInput(attrs={"placeholder": "Front desk"}))
    name = forms.CharField(max_length=64, required=False, label="Name",
                           help_text="Used in the API: letters, digits, '-' or '_'. Left empty, it is made from "
                                     "the label.",
                           widget=forms.TextInput(attrs={"placeholder": "front-desk", "autocapitalize": "none",
                                                         "spellcheck": "false"}))

    def clean(self):
        data = super().clean()
        label, name = data.get("label", "").strip(), data.get("name", "").strip()
        if not name and label:
            name = slugify(label)[:64]
        if not name:
            raise forms.ValidationError("Give the session a label or a name.")
        if not NAME_RE.match(name):
            self.add_error("name", "Use 1–64 letters, digits, '-' or '_' (no spaces or accents), e.g. front-desk.")
        data["label"], data["name"] = label, name
        return data


class PhoneForm(forms.Form):
    phone = forms.CharField(max_length=32, label="Phone number",
                            help_text="The number of the phone with WhatsApp, with its country code, "
                                      "e.g. +14155550123.",
                            widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel",
                                                          "placeholder": "+14155550123"}))

    def clean_phone(self):
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message, code="invalid_phone") from None


class SimulateScanForm(PhoneForm):
    push_name = forms.CharField(max_length=120, required=False, label="WhatsApp name",
                                help_text="The profile name the simulated phone reports.",
                                widget=forms.TextInput(attrs={"placeholder": "Simulated user"}))

    def clean_push_name(self):
        return self.cleaned_data["push_name"].strip() or "Simulated user"
