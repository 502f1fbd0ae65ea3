from django.apps import AppConfig


class CoreConfig(AppConfig):
    """No models: an app so that its tasks are discovered and its checks registered."""

    name = "core"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
