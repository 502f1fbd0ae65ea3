"""Cards other features add to a session's page, below its own (registered in WhatsappConfig.ready()): the
sessions feature stays below the features that extend its page. A panel is a template rendered with the context its
function gives for the session, and the static scripts the card needs."""
from dataclasses import dataclass, field

from django.template.loader import render_to_string


@dataclass(frozen=True)
class Panel:
    template: str
    context: object  # (session) -> dict
    scripts: tuple = field(default=())


_panels = []


def register(panel):
    if panel not in _panels:
        _panels.append(panel)


def render(request, session):
    """[(html, scripts)] of every registered panel for `session`, in registration order."""
    return [(render_to_string(panel.template, {**panel.context(session), "session": session}, request=request),
             panel.scripts) for panel in _panels]
