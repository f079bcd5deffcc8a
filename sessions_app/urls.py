from django.urls import path

from . import api_views, export_views, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("conversations/new/", views.conversation_new, name="conversation_new"),
    path("conversations/<uuid:pk>/", views.conversation_detail, name="conversation_detail"),
    path("conversations/<uuid:pk>/settings/", views.conversation_settings, name="conversation_settings"),
    path("conversations/<uuid:pk>/rename/", views.conversation_rename, name="conversation_rename"),
    path("conversations/<uuid:pk>/archive/", views.conversation_archive, name="conversation_archive"),
    path("conversations/<uuid:pk>/unarchive/", views.conversation_unarchive, name="conversation_unarchive"),
    path("conversations/<uuid:pk>/delete/", views.conversation_delete, name="conversation_delete"),
    path("tokens/", views.token_list, name="token_list"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", api_views.metrics_view, name="metrics"),
    path("api/conversations/<uuid:pk>/compact", api_views.conversation_compact_view, name="conversation_compact"),
    path("api/conversations/<uuid:pk>/", export_views.conversation_export_view, name="conversation_export"),
]
