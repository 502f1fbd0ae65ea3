"""The webhook receiver of the whatsapp tests: a workspace may choose its webhook endpoints for its alerts."""
from whatsapp.conftest import receiver  # noqa: F401
