from django import template

from billing.selectors import Amount

register = template.Library()


@register.filter
def money(payment):
    """A payment's amount with its currency: IDR 150,000 or USD 49.90."""
    return str(Amount(payment.amount, payment.currency))
