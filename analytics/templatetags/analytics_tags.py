from django import template

register = template.Library()


@register.filter
def percent(value):
    """0.8543 -> "85.4%" (the page's script writes live rates the same way); None -> "–"."""
    return "–" if value is None else f"{value * 100:.1f}%"
