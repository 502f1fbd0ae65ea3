import re
from decimal import Decimal

from django import forms
from django.conf import settings

from core.errors import DomainError
from tenants.models import Plan

from . import actions
from .models import Interval

INTERVAL_CHOICES = Interval.choices
AMOUNT = re.compile(r"-?\d+(\.\d+)?")
MAX_AMOUNT = Decimal("1e10")  # Payment.amount holds 12 digits, 2 of them decimals


class PlanChoiceForm(forms.Form):
    """An owner picks a plan and an interval (Checkout, or a switch during the trial)."""

    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="code",
                                  error_messages={"invalid_choice": "Choose one of the plans offered."})
    interval = forms.ChoiceField(choices=INTERVAL_CHOICES, initial=Interval.MONTHLY,
                                 error_messages={"invalid_choice": "Choose monthly or yearly."})


class ManualPaymentForm(forms.Form):
    amount = forms.CharField(max_length=20, widget=forms.TextInput(attrs={"inputmode": "decimal",
                                                                            "placeholder": "e.g. 150000"}))
    currency = forms.CharField(max_length=3, min_length=3)
    interval = forms.ChoiceField(choices=INTERVAL_CHOICES, initial=Interval.MONTHLY)
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), required=False, empty_label="Keep current plan")
    reference = forms.CharField(max_length=200, required=False,
                                widget=forms.TextInput(attrs={"placeholder": "Bank transfer reference"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].initial = settings.BILLING_CURRENCY.upper()

    def clean_amount(self):
        raw = self.cleaned_data["amount"].strip()
        # Plain digits only: "NaN", "1e20" or "150,000" would otherwise reach parse_amount or the database.
        if not AMOUNT.fullmatch(raw):
            raise forms.ValidationError("Enter the amount as a number, e.g. 150000 or 49.90.")
        try:
            amount = actions.parse_amount(raw)
        except DomainError as exc:
            raise forms.ValidationError(exc.message)
        if amount >= MAX_AMOUNT:
            raise forms.ValidationError("That amount is too large.")
        return amount

    def clean_currency(self):
        currency = self.cleaned_data["currency"].strip()
        if not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise forms.ValidationError("Use a three-letter currency code, e.g. IDR or USD.")
        return currency.lower()


class ExtendTrialForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=365, initial=7,
                              error_messages={"min_value": "Extend the trial by 1 to 365 days.",
                                              "max_value": "Extend the trial by 1 to 365 days.",
                                              "invalid": "Enter a whole number of days."})


class PlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), empty_label="Choose a plan")


class ChangePlanForm(PlanForm):
    interval = forms.ChoiceField(choices=[("", "Keep current interval"), *INTERVAL_CHOICES], required=False)
