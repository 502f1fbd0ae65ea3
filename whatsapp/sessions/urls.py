from django.urls import path

from . import views

urlpatterns = [
    path("", views.session_list, name="sessions"),
    path("<str:name>/", views.session_detail, name="session"),
    path("<str:name>/qr.svg", views.session_qr, name="session_qr"),
]
