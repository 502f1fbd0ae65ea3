from django.urls import path

from . import views as conversation_views

urlpatterns = [
    path("", conversation_views.conversation_list, name="conversations"),
    path("<int:pk>/", conversation_views.conversation_detail, name="conversation"),
]
