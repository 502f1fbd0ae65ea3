from django.urls import path

from . import views

# Included under /broadcasts/ by config/urls.py.
urlpatterns = [
    path("contacts/", views.contacts_page, name="campaign_contacts"),
    path("contacts/export.csv", views.contacts_export, name="campaign_contacts_export"),
]
