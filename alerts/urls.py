from django.urls import path

from . import views

urlpatterns = [
    path("", views.workspace_alerts, name="alerts"),
    path("settings/", views.alert_settings, name="alert_settings"),
]
