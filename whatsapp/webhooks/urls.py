from django.urls import path

from . import views

urlpatterns = [
    path("", views.webhook_list, name="webhooks"),
    path("<int:pk>/", views.webhook_detail, name="webhook"),
]
