from django import forms

from core.errors import DomainError
from core.phones import normalize_phone
from tenants.actions import slug_for
from tenants.models import Plan

from .actions import register_business


class BusinessSignupForm(forms.Form):
    """Fields allauth adds to its signup form; signup() turns them into a pending tenant."""

    business_name = forms.CharField(max_length=120, label="Business name")
    full_name = forms.CharField(max_length=120, label="Your name")
    phone = forms.CharField(max_length=32, label="Phone", help_text="With country code, e.g. +14155550123")
    plan = forms.ModelChoiceField(queryset=Plan.objects.filter(is_public=True), empty_label=None,
                                  label="Plan you want")

    field_order = ["business_name", "full_name", "email", "phone", "plan", "password1", "password2"]

    def clean_business_name(self):
        name = self.cleaned_data["business_name"].strip()
        try:
            slug_for(name)
        except DomainError as exc:
            raise forms.ValidationError(exc.message, code=exc.code.value)
        return name

    def clean_phone(self):
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message, code="invalid_phone") from None

    def signup(self, request, user):
        register_business(
            user=user,
            business_name=self.cleaned_data["business_name"],
            plan=self.cleaned_data["plan"],
            phone=self.cleaned_data["phone"],
        )
