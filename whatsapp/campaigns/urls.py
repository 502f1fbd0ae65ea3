from django.urls import path

from . import views

# Included under /broadcasts/ by config/urls.py.
urlpatterns = [
    path("contacts/", views.contacts_page, name="campaign_contacts"),
    path("contacts/export.csv", views.contacts_export, name="campaign_contacts_export"),
]
urlpatterns += [
    path("templates/", views.templates_page, name="campaign_templates"),
    path("", views.campaigns_page, name="campaigns"),
    path("<int:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("<int:campaign_id>/recipients.csv", views.campaign_recipients_export, name="campaign_recipients_export"),
]
