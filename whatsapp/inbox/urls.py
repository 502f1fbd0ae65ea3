from django.urls import path

from . import views

urlpatterns = [
    path("", views.conversation_list, name="conversations"),
    path("<int:pk>/", views.conversation_detail, name="conversation"),
    path("canned-replies/", views.canned_replies, name="canned_replies"),
    path("auto-assign/", views.auto_assign, name="auto_assign"),
]
