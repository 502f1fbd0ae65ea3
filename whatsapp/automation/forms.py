"""The Automation page's forms: the receptionist's settings (a day's hours written "09:00-12:00, 13:00-17:00",
holidays one date a line, keywords separated by commas) and a keyword rule. Their cleaned data is what
whatsapp.automation.actions takes; the actions validate the rest (overlaps, regexes) with their codes."""
import re

from django import forms

from tenants.serializers import TIME_ZONES

from . import actions, schedule
from .models import KeywordRule

DAY_LABELS = dict(zip(schedule.DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                      "Sunday")))


def hours_text(intervals, day):
    return ", ".join(f"{i['start']}-{i['end']}" for i in intervals if i["day"] == day)


class SettingsForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Answer automatically")
    time_zone = forms.ChoiceField(required=False, label="Time zone",
                                  choices=[("", "The workspace's time zone")] + [(z, z) for z in TIME_ZONES])
    holidays = forms.CharField(required=False, label="Holidays (closed all day)",
                               widget=forms.Textarea(attrs={"rows": 3, "placeholder": "2026-12-25"}),
                               help_text="One date a line, YYYY-MM-DD.")
    away_message = forms.CharField(required=False, max_length=actions.MAX_TEXT, label="Away message",
                                   widget=forms.Textarea(attrs={"rows": 2}),
                                   help_text="Sent outside business hours.")
    greeting = forms.CharField(required=False, max_length=actions.MAX_TEXT, label="Greeting",
                               widget=forms.Textarea(attrs={"rows": 2}), help_text="Sent to a contact's first message.")
    fallback = forms.CharField(required=False, max_length=actions.MAX_TEXT, label="Fallback reply",
                               widget=forms.Textarea(attrs={"rows": 2}),
                               help_text="Sent when nothing else answers.")
    cooldown_minutes = forms.IntegerField(min_value=0, max_value=actions.MAX_COOLDOWN_MINUTES,
                                          label="Minutes between two away messages or fallbacks to one contact")
    handoff_keywords = forms.CharField(required=False, max_length=1300, label="Words that ask for a person",
                                       help_text="Separated by commas, e.g. human, agent.")
    handoff_reply = forms.CharField(required=False, max_length=actions.MAX_TEXT, label="Answer to them",
                                    widget=forms.Textarea(attrs={"rows": 2}))
    handoff_minutes = forms.IntegerField(min_value=0, max_value=actions.MAX_HANDOFF_MINUTES,
                                         label="Minutes automation stays silent once a person takes over")
    bot_url = forms.URLField(required=False, max_length=2000, assume_scheme="https", label="Bot webhook URL",
                             help_text="Inbound messages are POSTed here, signed like our webhooks.")
    bot_enabled = forms.BooleanField(required=False, label="Ask the bot first")
    escalation_member_ids = forms.TypedMultipleChoiceField(
        required=False, coerce=int, label="Members emailed when a contact asks for a person",
        widget=forms.CheckboxSelectMultiple)
    escalation_emails = forms.CharField(required=False, max_length=6000, label="Other email addresses told",
                                        widget=forms.Textarea(attrs={"rows": 2}),
                                        help_text="Separated by commas or one a line.")
    escalation_telegram_chat_ids = forms.CharField(
        required=False, max_length=800, label="Telegram chats told",
        help_text="Chat ids (digits, or @channel) separated by commas; the platform's Telegram bot writes to them.")

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["escalation_member_ids"].choices = [
            (member.pk, member.user.full_name or member.user.email) for member in members]
        for day in schedule.DAYS:
            self.fields[f"hours_{day}"] = forms.CharField(
                required=False, max_length=200, label=DAY_LABELS[day],
                widget=forms.TextInput(attrs={"placeholder": "09:00-17:00"}))

    @staticmethod
    def initial_from(row):
        initial = {name: getattr(row, name) for name in actions.SETTINGS_FIELDS
                   if name not in ("schedule", "holidays", "handoff_keywords", "escalation_emails",
                                   "escalation_telegram_chat_ids")}
        initial["escalation_emails"] = "\n".join(row.escalation_emails or [])
        initial["escalation_telegram_chat_ids"] = ", ".join(row.escalation_telegram_chat_ids or [])
        initial["holidays"] = "\n".join(row.holidays or [])
        initial["handoff_keywords"] = ", ".join(row.handoff_keywords or [])
        initial.update({f"hours_{day}": hours_text(row.schedule or [], day) for day in schedule.DAYS})
        return initial

    def changes(self):
        data = dict(self.cleaned_data)
        intervals = []
        for day in schedule.DAYS:
            for part in filter(None, (p.strip() for p in data.pop(f"hours_{day}").split(","))):
                start, _, end = part.partition("-")
                intervals.append({"day": day, "start": start.strip(), "end": end.strip()})
        data["schedule"] = intervals
        data["holidays"] = [line.strip() for line in data["holidays"].splitlines() if line.strip()]
        data["handoff_keywords"] = [w.strip() for w in data["handoff_keywords"].split(",") if w.strip()]
        data["escalation_emails"] = [e.strip() for e in re.split(r"[,\s]+", data["escalation_emails"]) if e.strip()]
        data["escalation_telegram_chat_ids"] = [c.strip() for c in data["escalation_telegram_chat_ids"].split(",")
                                                if c.strip()]
        return data


class RuleForm(forms.Form):
    name = forms.CharField(max_length=120)
    match = forms.ChoiceField(choices=KeywordRule.Match.choices, initial=KeywordRule.Match.CONTAINS)
    pattern = forms.CharField(max_length=500, label="Keyword or pattern")
    priority = forms.IntegerField(min_value=0, max_value=1_000_000, initial=100, help_text="Lower is tried first.")
    action = forms.ChoiceField(choices=KeywordRule.Action.choices, initial=KeywordRule.Action.REPLY)
    reply_type = forms.ChoiceField(choices=KeywordRule.ReplyType.choices, initial=KeywordRule.ReplyType.TEXT,
                                   label="Reply with")
    reply_text = forms.CharField(required=False, max_length=actions.MAX_TEXT, label="Reply text (or caption)",
                                 widget=forms.Textarea(attrs={"rows": 2}))
    media_url = forms.URLField(required=False, max_length=2000, assume_scheme="https", label="Media URL")
    cooldown_minutes = forms.IntegerField(min_value=0, max_value=actions.MAX_COOLDOWN_MINUTES, initial=60,
                                          label="Cooldown per contact (minutes)")
    in_groups = forms.BooleanField(required=False, label="Also answer in groups")
