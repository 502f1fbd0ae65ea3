"""The session host's shared state (public schema): which host runs which session, by lease."""
