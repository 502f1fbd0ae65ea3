"""Fixtures of the whatsapp tests.

Per-number pacing (whatsapp.pacing) holds a session's second message back for seconds, and tests of the rest of
the pipeline send several messages through one session without a clock: they run with pacing off.
test_pacing (and any test about pacing) turns it on with settings.WHATSAPP_PACING_ENABLED = True.
"""
import pytest


@pytest.fixture(autouse=True)
def _pacing_off(settings):
    settings.WHATSAPP_PACING_ENABLED = False
