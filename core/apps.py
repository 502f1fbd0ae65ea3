from django.apps import AppConfig


class CoreConfig(AppConfig):
    """No models: an app so that its tasks are discovered."""

    name = "core"
