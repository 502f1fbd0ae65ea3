"""The alert settings form: the page's checkboxes and the chat ids one per line or separated by commas; the rules
(and their messages) are alerts.actions.check_alert_settings', the same as the API's."""
import re

from django import forms

from .models import MAX_TELEGRAM_CHATS, Channel, Kind


class AlertSettingsForm(forms.Form):
    channels = forms.MultipleChoiceField(choices=Channel.choices, required=False,
                                         widget=forms.CheckboxSelectMultiple, label="Send alerts by")
    telegram_chat_ids = forms.CharField(
        required=False, label="Telegram chat ids", max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "autocapitalize": "none", "spellcheck": "false",
                                     "placeholder": "-1001234567890"}),
        help_text=f"One per line or separated by commas, at most {MAX_TELEGRAM_CHATS}: a chat's number (add the "
                  "platform's bot to the chat first) or a public channel's @name.")
    kinds = forms.MultipleChoiceField(choices=Kind.choices, required=False, widget=forms.CheckboxSelectMultiple,
                                      label="Tell about")

    def clean_telegram_chat_ids(self):
        return [chat for chat in re.split(r"[\s,]+", self.cleaned_data["telegram_chat_ids"]) if chat]
