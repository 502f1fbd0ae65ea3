"""The endpoint form of the webhook pages. It parses and checks the target like the API does (same codes and
messages, from delivery.check_target); whatsapp.webhooks.actions changes state."""
from django import forms

from . import EVENTS
from . import delivery as wire

EVENT_HELP = {
    "message.received": "A message arrived on one of your numbers.",
    "message.sent": "WhatsApp accepted a message you sent.",
    "message.delivered": "It reached the recipient's phone.",
    "message.read": "The recipient read it.",
    "message.failed": "It could not be sent (with the reason).",
    "session.qr": "A new QR code is waiting for a scan (they rotate every 20–60 s).",
    "session.connected": "A number connected.",
    "session.disconnected": "A number lost its connection (and whether it retries).",
    "session.logged_out": "A number was unlinked from its phone.",
    "alert.firing": "An alert about your numbers, webhooks or broadcasts (when Alert settings choose the webhook).",
    "alert.resolved": "That alert is over.",
}


class EndpointForm(forms.Form):
    url = forms.CharField(max_length=2000, label="URL",
                          help_text="Your https:// address that receives the events as signed POST requests.",
                          widget=forms.TextInput(attrs={"type": "url", "inputmode": "url", "autocapitalize": "none",
                                                        "spellcheck": "false",
                                                        "placeholder": "https://example.com/whatsapp/events"}))
    description = forms.CharField(max_length=200, required=False, label="Description",
                                  widget=forms.TextInput(attrs={"placeholder": "CRM integration"}))
    events = forms.MultipleChoiceField(choices=[(e, e) for e in EVENTS], widget=forms.CheckboxSelectMultiple,
                                       label="Events", error_messages={
                                           "required": "Choose at least one event to send to this URL."})
    ordered = forms.BooleanField(
        required=False, label="In order, one at a time",
        help_text="Events reach this URL in the order they happened, one at a time (slower; a failing delivery "
                  "holds the ones after it until it succeeds or gives up). Off: sent concurrently; order by "
                  "the payload's timestamp.")

    def __init__(self, *args, with_enabled=False, **kwargs):
        super().__init__(*args, **kwargs)
        if with_enabled:
            self.fields["enabled"] = forms.BooleanField(
                required=False, label="Enabled",
                help_text="Disabled endpoints get no new events; waiting retries resume when enabled again.")

    def clean_url(self):
        url = self.cleaned_data["url"].strip()
        try:
            wire.check_target(url)
        except wire.TargetError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return url

    def clean_events(self):
        return list(dict.fromkeys(self.cleaned_data["events"]))

    def event_choices(self):
        """(name, description, checked) for the template's checkboxes."""
        chosen = set(self["events"].value() or [])
        return [(e, EVENT_HELP.get(e, ""), e in chosen) for e in EVENTS]
