"""The whatsapp tests' fixtures (API clients, an in-process simulator host, pacing off): analytics counts what the
pipeline does, so its tests drive the pipeline the same way."""
from whatsapp.conftest import _pacing_off, as_user, clients, clock, host, private_layer  # noqa: F401
