from django.urls import path

from . import views

urlpatterns = [
    path("", views.backups_page, name="backups_page"),
    path("start", views.start_backup, name="backups_start"),
    path("cleanup", views.cleanup, name="backups_cleanup"),
    path("<int:backup_id>/download", views.download_backup, name="backups_download"),
    path("<int:backup_id>/delete", views.delete_backup, name="backups_delete"),
    path("<int:backup_id>/restore", views.restore_backup, name="backups_restore"),
]

export_urlpatterns = [
    path("", views.data_export_page, name="data_export"),
    path("<int:export_id>/download", views.data_export_download, name="data_export_download"),
]
