from django.urls import path

from . import policy_views as sending_views

# Included under /sending/ by config/urls.py.
urlpatterns = [
    path("", sending_views.sending_settings, name="sending_settings"),
    path("sessions/<str:name>/queue", sending_views.session_queue, name="session_queue"),
]
