"""The HTTP side of config.asgi: Django's ASGI handler with its middleware chain run in one thread hop.

Every view and most middleware here are synchronous (the ORM is), but allauth's middleware can run either way,
so Django's stock handler builds a mixed chain: a hop into a worker thread for the sync middleware, a hop back
to the event loop for the async-capable ones below them, and a third into the thread again for the view. Each
hop is a future, a context copy and two thread handoffs. Built as WSGI builds it (every middleware and the view
synchronous) and called through one sync_to_async, a request makes a single hop, in the thread Django's
ThreadSensitiveContext gives it. Measured under daphne: see bench/send_pipeline.py (ASGI_HANDLER=stock runs
Django's handler instead, to measure it again).
"""
import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)


HANDLERS = {"switchboard": SyncChainASGIHandler, "stock": ASGIHandler}


def application():
    """The handler ASGI_HANDLER names, set up as django.core.asgi.get_asgi_application sets up Django's."""
    django.setup(set_prefix=False)
    try:
        handler = HANDLERS[settings.ASGI_HANDLER]
    except KeyError:
        raise ImproperlyConfigured(f"ASGI_HANDLER is {settings.ASGI_HANDLER!r}: use one of {', '.join(HANDLERS)}.")
    return handler()
