"""Who changed what: one append-only log for every app (public schema). Every app writes it; it imports none."""
