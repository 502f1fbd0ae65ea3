"""Live conversation pages over a real websocket (config.asgi.application, the Redis channel layer): a message
stored or moved by whatsapp.messaging.actions or the drain (whatsapp.messaging.drain) reaches its conversation's socket and the
tenant's list socket once the transaction commits, a batch as one update per message, never another tenant's;
another tenant's conversation id is closed with 4404."""
import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django_tenants.utils import schema_context

from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tests.socket_support import open_socket, refusal
from whatsapp.tests.support import Accepting

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_layer")]
ACME, GLOBEX = "t_test_acme", "t_test_globex"
PEER_JID = "6281234567890@s.whatsapp.net"


async def next_news(ws):
    """The socket's next message other than who is online (members.presence, sent as pages open and close)."""
    while True:
        message = await ws.receive_json_from(timeout=5)
        if message["type"] != "members.presence":
            return message


def make_session(schema, name):
    with schema_context(schema):
        return WhatsAppSession.objects.create(name=name, phone="+14155550123",
                                              status=WhatsAppSession.Status.CONNECTED)


def receive(schema, session, text, sender=PEER_JID, phone="+6281234567890"):
    """An inbound message, stored as the host's publisher stores it: inside a transaction in the schema."""
    with schema_context(schema), transaction.atomic():
        n = Message.objects.count() + 1
        return messaging.store_inbound(session, {"id": f"IN{n}", "chat": sender, "sender": sender,
                                                 "sender_phone": phone, "type": "text", "text": text})


def deliver(schema, session, provider_ids):
    with schema_context(schema), transaction.atomic():
        messaging.apply_receipt(session, {"ids": provider_ids, "status": "delivered"})


def outgoing(schema, session, conversation_id, texts=("reply",), provider=None):
    """Queued messages, sent by a drain of the session (as the host's drain task does). Returns their ids."""
    with schema_context(schema):
        ids = [Message.objects.create(session=session, direction="out", status="queued", chat_jid=PEER_JID,
                                      text=text, conversation_id=conversation_id).pk for text in texts]
    window = sending.SendWindow()
    window.observe(1, 0.0001)  # one claim for all of them
    sending.drain(schema, session.pk, provider or Accepting(), window=window)
    return ids


async def test_a_new_message_and_its_status_reach_the_conversation_and_list_sockets(client, named):
    session = await database_sync_to_async(make_session)(ACME, "front-desk")
    first = await database_sync_to_async(receive)(ACME, session, "hello")
    conversation_id = first.conversation_id

    page, connected, _ = await open_socket(client, named.alice, f"/ws/conversations/{conversation_id}/")
    assert connected
    snapshot = await page.receive_json_from(timeout=5)
    assert snapshot["type"] == "conversation.snapshot"
    assert [m["text"] for m in snapshot["data"]["messages"]] == ["hello"]
    assert snapshot["data"]["conversation"]["unread_count"] == 1
    listing, connected, _ = await open_socket(client, named.bob, "/ws/conversations/")
    assert connected
    rows = (await listing.receive_json_from(timeout=5))["data"]["conversations"]
    assert [(r["id"], r["last_message_preview"]) for r in rows] == [(conversation_id, "hello")]

    second = await database_sync_to_async(receive)(ACME, session, "are you there?")
    for ws in (page, listing):
        update = await ws.receive_json_from(timeout=5)
        assert update["type"] == "message.update"
        data = update["data"]
        assert (data["id"], data["text"], data["status"], data["direction"]) == (
            second.pk, "are you there?", "received", "in")
        assert data["conversation"]["id"] == conversation_id
        assert data["conversation"]["unread_count"] == 2
        assert data["conversation"]["last_message_preview"] == "are you there?"

    whatsapp = Accepting()
    [sent_id] = await database_sync_to_async(outgoing)(ACME, session, conversation_id, ("reply",), whatsapp)
    assert (await page.receive_json_from(timeout=5))["data"]["status"] == "sent"
    await database_sync_to_async(deliver)(ACME, session, ["SIM1"])
    update = await page.receive_json_from(timeout=5)
    assert (update["data"]["id"], update["data"]["status"]) == (sent_id, "delivered")

    # A batch sent in one drain and delivered by one receipt: the page hears of each message, in order.
    batch = await database_sync_to_async(outgoing)(ACME, session, conversation_id, ("a", "b", "c"), whatsapp)
    sent = [(await page.receive_json_from(timeout=5))["data"] for _ in batch]
    assert [(m["id"], m["status"], m["text"]) for m in sent] == list(zip(batch, ["sent"] * 3, "abc"))
    await database_sync_to_async(deliver)(ACME, session, [m["provider_message_id"] for m in sent])
    delivered = [(await page.receive_json_from(timeout=5))["data"] for _ in batch]
    assert [(m["id"], m["status"]) for m in delivered] == [(pk, "delivered") for pk in batch]
    await page.disconnect()
    await listing.disconnect()


async def test_nothing_arrives_from_another_tenant(client, named):
    acme = await database_sync_to_async(make_session)(ACME, "front-desk")
    globex = await database_sync_to_async(make_session)(GLOBEX, "globex-line")
    mine = await database_sync_to_async(receive)(GLOBEX, globex, "globex first")

    carol_list, connected, _ = await open_socket(client, named.carol, "/ws/conversations/")
    assert connected
    assert [r["last_message_preview"] for r in
            (await carol_list.receive_json_from(timeout=5))["data"]["conversations"]] == ["globex first"]
    carol_page, connected, _ = await open_socket(client, named.carol, f"/ws/conversations/{mine.conversation_id}/")
    assert connected
    await carol_page.receive_json_from(timeout=5)  # the snapshot

    # Acme's message, then Globex's: Carol's sockets get Globex's first (messages on a channel keep their order).
    await database_sync_to_async(receive)(ACME, acme, "acme secret")
    await database_sync_to_async(receive)(GLOBEX, globex, "globex second")
    for ws in (carol_list, carol_page):
        update = await next_news(ws)
        assert update["data"]["text"] == "globex second" and update["data"]["session"] == "globex-line"
    await carol_list.disconnect()
    await carol_page.disconnect()


async def test_another_tenants_conversation_is_closed_with_4404(client, named):
    session = await database_sync_to_async(make_session)(ACME, "front-desk")
    message = await database_sync_to_async(receive)(ACME, session, "hello")
    with_id = f"/ws/conversations/{message.conversation_id}/"

    assert await refusal(client, named.carol, with_id) == 4404
    assert await refusal(client, named.alice, f"/ws/conversations/{message.conversation_id + 99}/") == 4404
    ws, connected, _ = await open_socket(client, named.bob, with_id)  # a member of Acme may watch
    assert connected
    await ws.disconnect()

    assert await refusal(None, None, with_id) == 4404


async def test_members_with_an_inbox_page_open_are_online_and_list_pages_hear_of_it(client, named):
    from accounts.models import Membership
    from whatsapp.inbox import presence

    def memberships():
        return (Membership.objects.get(user=named.alice).pk, Membership.objects.get(user=named.bob).pk)

    alice, bob = await database_sync_to_async(memberships)()
    listing, connected, _ = await open_socket(client, named.alice, "/ws/conversations/")
    assert connected
    assert (await listing.receive_json_from(timeout=5))["type"] == "conversations.snapshot"
    assert (await listing.receive_json_from(timeout=5)) == {"type": "members.presence", "data": {"online": [alice]}}

    session = await database_sync_to_async(make_session)(ACME, "front-desk")
    first = await database_sync_to_async(receive)(ACME, session, "hello")
    await listing.receive_json_from(timeout=5)  # the message's update
    page, connected, _ = await open_socket(client, named.bob, f"/ws/conversations/{first.conversation_id}/")
    assert connected
    assert (await listing.receive_json_from(timeout=5)) == {"type": "members.presence",
                                                            "data": {"online": sorted([alice, bob])}}
    assert await database_sync_to_async(presence.online_member_ids)(ACME) == {alice, bob}
    await page.send_json_to({"type": "ping"})  # a heartbeat keeps bob online, and is no news
    assert (await page.receive_json_from(timeout=5))["type"] in ("conversation.snapshot", "pong")
    await page.disconnect()
    assert (await listing.receive_json_from(timeout=5)) == {"type": "members.presence", "data": {"online": [alice]}}
    assert await database_sync_to_async(presence.online_member_ids)(GLOBEX) == set()  # another tenant's inbox
    await listing.disconnect()
    assert await database_sync_to_async(presence.online_member_ids)(ACME) == set()
