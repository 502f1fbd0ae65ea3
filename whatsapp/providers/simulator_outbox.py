"""What simulated "WhatsApp" accepted: one JSON line per send, in `<store_dir>/simulator-outbox.jsonl`.

The session host can die (SIGKILL) between WhatsApp accepting a message and the database recording it, and a
later host may send the message again: the database alone cannot tell how many copies reached WhatsApp. This
log can (`record_inbound` keeps the same kind of log of the inbound messages it accepted for a device). Each line
goes out in a single os.write on a file opened with O_APPEND, so once `record` returns the
line is in the kernel's page cache whole, whatever happens to the writing process next (a SIGKILL does not
lose it, and concurrent writers — threads or processes — never interleave within a line). Only a machine
crash could; the simulator does not pretend to be durable against that.
"""
import json
import os
import threading

FILENAME = "simulator-outbox.jsonl"
# A long text is cut: a record says which message it was, it is not an archive of it.
MAX_TEXT = 4000

_fds = {}
_fds_lock = threading.Lock()


def outbox_path(store_dir):
    return os.path.join(store_dir, FILENAME)


def _fd(path):
    with _fds_lock:
        fd = _fds.get(path)
        if fd is None:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _fds[path] = fd
        return fd


def record(store_dir, *, session_key, message_id, chat, type, text):
    """Append one accepted send. Called by the simulator after it accepted the message (it has an id)."""
    line = json.dumps({"session": session_key, "id": message_id, "chat": chat, "type": type,
                       "text": (text or "")[:MAX_TEXT]}, ensure_ascii=True, separators=(",", ":")) + "\n"
    data = line.encode()
    written = os.write(_fd(outbox_path(store_dir)), data)
    if written != len(data):  # regular files write all of it or fail; never leave half a record silently
        raise OSError(f"short write to the simulator outbox ({written} of {len(data)} bytes)")


def read(store_dir):
    """Every record in the log, in write order. A last line without its newline (a write cut short by a full
    disk) is not a record and is skipped."""
    return _read_lines(outbox_path(store_dir))


INBOUND_FILENAME = "simulator-inbound.jsonl"


def inbound_path(store_dir):
    return os.path.join(store_dir, INBOUND_FILENAME)


def record_inbound(store_dir, *, session_key, message_id, chat):
    """Append one inbound message simulated "WhatsApp" accepted for the session (before it is delivered to the
    device): the count of what must end up stored, which tests and benches compare with the database."""
    line = json.dumps({"session": session_key, "id": message_id, "chat": chat}, ensure_ascii=True,
                      separators=(",", ":")) + "\n"
    data = line.encode()
    written = os.write(_fd(inbound_path(store_dir)), data)
    if written != len(data):
        raise OSError(f"short write to the simulator inbound log ({written} of {len(data)} bytes)")


def read_inbound(store_dir):
    return _read_lines(inbound_path(store_dir))


def _read_lines(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in raw.split(b"\n")[:-1] if line.strip()]
