from django.urls import path

from . import views

app_name = "alerts"
urlpatterns = [
    path("alerts/", views.alert_list, name="list"),
    path("alerts/badge/", views.badge, name="badge"),
    path("alerts/<int:pk>/acknowledge/", views.acknowledge, name="acknowledge"),
    path("alerts/channels/new/", views.channel_create, name="channel_create"),
    path("alerts/channels/<int:pk>/edit/", views.channel_edit, name="channel_edit"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="channel_delete"),
    path("alerts/channels/<int:pk>/rotate/", views.channel_rotate, name="channel_rotate"),
]
