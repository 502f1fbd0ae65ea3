from django.urls import path

from . import views

# Included under /automation/ by config/urls.py.
urlpatterns = [
    path("", views.automation_page, name="automation"),
]
