"""Per-number pacing against bans: when may the next outgoing message of a session go."""


def reserve_slot(session_id, now):
    """Reserve the next send slot of this session; returns the time the message may be sent (now = at once)."""
    return now
