"""WhatsApp's server side of a simulated device: what it still owes the device, kept until the device acknowledges it.

WhatsApp's server holds every message and receipt addressed to a linked device until that device acknowledges it,
and hands whatever is unacknowledged to the device's next connection — whichever machine that connection comes
from. The simulator models this here: one file per item owed (a receipt that is due, an inbound message), under
`<store_dir>/simulator-server/<quoted session key>/`. Acknowledging an item deletes its file; a (re)connecting
session reads the directory and gets every item still there.

Why files in WHATSAPP_STORE_DIR, and not Redis or Postgres: that directory already is the simulator's shared world.
Every host reads the device stores (`*.simulator.json`) and the outbox log (simulator_outbox) from it, and it has
to be shared between hosts for a takeover to resume a linked device at all, so a queue kept beside them is seen by
whichever host runs the session next, with no new dependency. Redis is no home for it: this deployment runs it
without persistence (a Redis restart was part of the chaos run of issue 11), and WhatsApp's queue does not vanish
when our cache restarts. Postgres is our side, not WhatsApp's: a queue in our database could be rolled back or
restored together with our own rows, and the providers package stays free of the ORM (base.py).

Durability: an item is written to a temporary name and linked into place (os.link: atomic, and refused when the
name exists), so a reader sees a whole item or none, whatever happens to the writer. Like the outbox, the page
cache is enough: a SIGKILL of the host loses nothing; only a machine crash could, which the simulator does not
model. Deleting a file twice, or an item redelivered to two hosts, is harmless: our side applies events
idempotently by WhatsApp id (at-least-once in, exactly-once stored).

Item (JSON): kind ("receipt" | "message"), id (the WhatsApp message id), due (wall-clock epoch seconds), seq (a
tie-break in the order items were made), and for a receipt chat and status, for a message data (the MESSAGE
event's data; media bytes as base64 under media_b64).
"""
import base64
import json
import os
import secrets
import shutil
import time
from urllib.parse import quote

DIRNAME = "simulator-server"
SUFFIX = ".json"


def session_dir(store_dir, session_key):
    return os.path.join(store_dir, DIRNAME, quote(session_key, safe=""))


def item_name(kind, message_id, status=""):
    return f"{kind}.{status or 'msg'}.{quote(str(message_id), safe='')}{SUFFIX}"


def _encode(item):
    data = item.get("data")
    if data and isinstance(data.get("media"), (bytes, bytearray)):
        data = dict(data)
        data["media_b64"] = base64.b64encode(data.pop("media")).decode()
        item = {**item, "data": data}
    return json.dumps(item, ensure_ascii=True, separators=(",", ":")).encode()


def _decode(raw):
    item = json.loads(raw)
    data = item.get("data")
    if data and "media_b64" in data:
        data["media"] = base64.b64decode(data.pop("media_b64"))
    return item


def put(store_dir, session_key, item):
    """Keep `item` for the session unless one of the same name is kept already. Returns the item's name, or None
    when it was there (a redelivered receipt must not reset the item that follows it)."""
    directory = session_dir(store_dir, session_key)
    os.makedirs(directory, exist_ok=True)
    name = item_name(item["kind"], item["id"], item.get("status", ""))
    item = {**item, "seq": item.get("seq") or time.time_ns()}
    tmp = os.path.join(directory, f".{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        data = _encode(item)
        if os.write(fd, data) != len(data):
            raise OSError("short write of a simulator server item")
    finally:
        os.close(fd)
    try:
        os.link(tmp, os.path.join(directory, name))
    except FileExistsError:
        return None
    finally:
        os.unlink(tmp)
    return name


def holds(store_dir, session_key, name):
    return os.path.exists(os.path.join(session_dir(store_dir, session_key), name))


def pending(store_dir, session_key):
    """Every item the session has not acknowledged, as (name, item), in due order (ties: the order made)."""
    directory = session_dir(store_dir, session_key)
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX) and not n.startswith(".")]
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                found.append((name, _decode(f.read())))
        except FileNotFoundError:  # acknowledged meanwhile
            continue
    found.sort(key=lambda entry: (entry[1].get("due", 0), entry[1].get("seq", 0)))
    return found


def ack(store_dir, session_key, name):
    """The device acknowledged the item: WhatsApp forgets it. Acknowledging twice is harmless."""
    try:
        os.unlink(os.path.join(session_dir(store_dir, session_key), name))
    except FileNotFoundError:
        pass


def forget(store_dir, session_key):
    """The device was unlinked: what WhatsApp kept for it goes with it."""
    shutil.rmtree(session_dir(store_dir, session_key), ignore_errors=True)
