"""Broadcasts' Celery task: the feeder's round (beat, every 5 s)."""
from celery import shared_task

from . import feeder


@shared_task(name="whatsapp.campaigns.tasks.feed_campaigns", ignore_result=True)
def feed_campaigns():
    """In every active tenant's schema, start the scheduled campaigns whose time came and feed the running ones
    (whatsapp.campaigns.feeder)."""
    return feeder.feed_all()
