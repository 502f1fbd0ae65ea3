"""Websocket refusals the page can read. A consumer that closes before accepting makes daphne answer the handshake
with HTTP 403: the browser sees close code 1006 and keeps reconnecting, learning nothing. Accepted, then closed with
an application code (4403 not allowed, 4404 not found, as static/js/live.js reads them), the page says why and stops.
"""
NOT_FOUND = 4404  # unknown, another tenant's, no tenant, not logged in
FORBIDDEN = 4403  # the tenant may not watch now (suspended)


async def refuse(consumer, code):
    await consumer.accept()
    await consumer.close(code=code)


def member_group(tenant_id, user_id):
    """The group every socket of one member of one workspace joins, so that removing the member closes them."""
    return f"member.{tenant_id}.{user_id}"


MEMBER_REMOVED = "member.removed"  # the group message's type; consumers close with FORBIDDEN on it
