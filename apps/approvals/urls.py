from django.urls import path

from . import views

app_name = "approvals"
urlpatterns = [
    path("approvals/", views.inbox, name="inbox"),
    path("approvals/list/", views.inbox_list, name="list"),
    path("approvals/bulk/", views.bulk_decide, name="bulk"),
    path("approvals/health/", views.health, name="health"),
    path("approvals/<int:pk>/", views.request_detail, name="detail"),
    path("approvals/<int:pk>/decide/", views.request_decide, name="decide"),
    path("approvals/queues/", views.queue_list, name="queue_list"),
    path("approvals/queues/new/", views.queue_create, name="queue_create"),
    path("approvals/queues/<int:pk>/edit/", views.queue_edit, name="queue_edit"),
    path("approvals/queues/<int:pk>/delete/", views.queue_delete, name="queue_delete"),
]
