"""What other features show on a member's dashboard (registered in their AppConfig.ready()): notices above the
cards (e.g. webhook deliveries that gave up) and cards in the grid. Each is a template and a function giving its
context for the request, or None when it has nothing to show."""
from dataclasses import dataclass

from django.template.loader import render_to_string


@dataclass(frozen=True)
class Part:
    template: str
    context: object  # (request) -> dict, or None to show nothing


_notices, _cards = [], []


def add_notice(part):
    if part not in _notices:
        _notices.append(part)


def add_card(part):
    if part not in _cards:
        _cards.append(part)


def _render(request, parts):
    shown = []
    for part in parts:
        context = part.context(request)
        if context is not None:
            shown.append(render_to_string(part.template, context, request=request))
    return shown


def notices(request):
    return _render(request, _notices)


def cards(request):
    return _render(request, _cards)
