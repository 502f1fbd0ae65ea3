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

Storage: one append-only journal per session (`journal.jsonl`: "put" and "ack" records, one os.write each on a
file opened with O_APPEND, as the outbox), folded on read: what was put and not acknowledged is pending. A file per
item was tried first and cost ~0.7 ms per send on this machine's ext4 (creating an inode), against ~15 µs for an
append. The page cache is enough: a SIGKILL of the host loses nothing; only a machine crash could, which the
simulator does not model. A connecting session compacts its journal (rewrites it with only what is pending) under
an exclusive flock; writers append under a shared one and reopen the file when it was replaced, so no record
goes to a replaced file. Acknowledging twice, or an item redelivered to two hosts, is harmless: our side applies
events idempotently by WhatsApp id (at-least-once in, exactly-once stored).

Item (JSON): kind ("receipt" | "message"), id (the WhatsApp message id), due (wall-clock epoch seconds), seq (a
tie-break in the order items were made), and for a receipt chat and status, for a message data (the MESSAGE
event's data; media bytes as base64 under media_b64).
"""
import base64
import fcntl
import json
import os
import shutil
import threading
import time
from urllib.parse import quote

DIRNAME = "simulator-server"
JOURNAL = "journal.jsonl"
COMPACT_MIN_RECORDS = 200  # a journal is rewritten on connect when it holds this many records beyond the pending

_files = {}  # path -> (journal fd, lock fd), per process
_files_lock = threading.Lock()


def session_dir(store_dir, session_key):
    return os.path.join(store_dir, DIRNAME, quote(session_key, safe=""))


def _lock_path(store_dir, session_key):
    # Beside the session's directory, not in it: forget() removes the directory, the lock must stay the same file.
    return os.path.join(store_dir, DIRNAME, f".lock-{quote(session_key, safe='')}")


def item_name(kind, message_id, status=""):
    return f"{kind}.{status or 'msg'}.{message_id}"


def _encode(item):
    data = item.get("data")
    if data and isinstance(data.get("media"), (bytes, bytearray)):
        data = dict(data)
        data["media_b64"] = base64.b64encode(data.pop("media")).decode()
        item = {**item, "data": data}
    return item


def _decode(item):
    data = item.get("data")
    if data and "media_b64" in data:
        data["media"] = base64.b64decode(data.pop("media_b64"))
    return item


def _open(store_dir, session_key):
    directory = session_dir(store_dir, session_key)
    os.makedirs(directory, exist_ok=True)
    journal = os.open(os.path.join(directory, JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lock = os.open(_lock_path(store_dir, session_key), os.O_RDWR | os.O_CREAT, 0o644)
    return journal, lock


def _append(store_dir, session_key, record):
    line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    path = os.path.join(session_dir(store_dir, session_key), JOURNAL)
    with _files_lock:  # one writer per process at a time: the fds below may be swapped
        files = _files.get(path)
        if files is None:
            files = _files[path] = _open(store_dir, session_key)
        journal, lock = files
        fcntl.flock(lock, fcntl.LOCK_SH)  # no compaction between the check and the write
        try:
            if os.fstat(journal).st_nlink == 0:  # compacted or forgotten since: append to the file there now
                os.close(journal)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                journal = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _files[path] = (journal, lock)
            if os.write(journal, line) != len(line):
                raise OSError("short write to the simulator server journal")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fold(raw):
    items = {}
    records = 0
    for line in raw.split(b"\n")[:-1]:  # a last line without its newline is a write cut short: not a record
        if not line.strip():
            continue
        records += 1
        record = json.loads(line)
        if record.get("op") == "put":
            items[record["name"]] = record["item"]
        else:
            items.pop(record.get("name"), None)
    return items, records


def _read(store_dir, session_key):
    try:
        with open(os.path.join(session_dir(store_dir, session_key), JOURNAL), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def put(store_dir, session_key, item):
    """Keep `item` for the session (until acknowledged). Returns its name."""
    name = item_name(item["kind"], item["id"], item.get("status", ""))
    item = {**item, "seq": item.get("seq") or time.time_ns()}
    _append(store_dir, session_key, {"op": "put", "name": name, "item": _encode(item)})
    return name


def pending(store_dir, session_key):
    """Every item the session has not acknowledged, as (name, item), in due order (ties: the order made)."""
    items, _ = _fold(_read(store_dir, session_key))
    found = [(name, _decode(item)) for name, item in items.items()]
    found.sort(key=lambda entry: (entry[1].get("due", 0), entry[1].get("seq", 0)))
    return found


def ack(store_dir, session_key, name):
    """The device acknowledged the item: WhatsApp forgets it. Acknowledging twice is harmless."""
    _append(store_dir, session_key, {"op": "ack", "name": name})


def compact(store_dir, session_key):
    """Rewrite the journal with only what is pending, when acknowledged records have piled up. Returns pending()."""
    directory = session_dir(store_dir, session_key)
    if not os.path.isdir(directory):
        return []
    lock = os.open(_lock_path(store_dir, session_key), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        items, records = _fold(_read(store_dir, session_key))
        if records - len(items) >= COMPACT_MIN_RECORDS:
            tmp = os.path.join(directory, f".{JOURNAL}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(b"".join((json.dumps({"op": "put", "name": name, "item": item}, ensure_ascii=True,
                                             separators=(",", ":")) + "\n").encode()
                                 for name, item in items.items()))
            os.replace(tmp, os.path.join(directory, JOURNAL))
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    found = [(name, _decode(item)) for name, item in items.items()]
    found.sort(key=lambda entry: (entry[1].get("due", 0), entry[1].get("seq", 0)))
    return found


def forget(store_dir, session_key):
    """The device was unlinked: what WhatsApp kept for it goes with it."""
    shutil.rmtree(session_dir(store_dir, session_key), ignore_errors=True)
