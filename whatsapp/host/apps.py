from django.apps import AppConfig


class SessionHostConfig(AppConfig):
    name = "whatsapp.host"
    label = "whatsapp_host"
    verbose_name = "WhatsApp session host"
