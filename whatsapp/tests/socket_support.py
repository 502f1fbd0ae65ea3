"""Helpers of the websocket tests: a logged-in user's socket on the real ASGI application."""
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from config.asgi import application


def session_cookie(client, user):
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def open_socket(client, user, path):
    """(communicator, connected, close code) of `user`'s socket at `path`, logged in through Django's session
    (user None: an anonymous visitor)."""
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(client, user)
        headers.append((b"cookie", cookie.encode()))
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await ws.connect()
    return ws, connected, code


async def refusal(client, user, path):
    """The close code of a socket the server accepts and closes at once (core.sockets.refuse: why it may not
    watch), or None when it stays open."""
    ws, connected, _ = await open_socket(client, user, path)
    assert connected, "refused at the handshake: the page could not read why"
    message = await ws.receive_output(timeout=5)
    return message.get("code") if message["type"] == "websocket.close" else None
