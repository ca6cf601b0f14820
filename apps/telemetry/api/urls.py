from django.urls import path

from .views import RecordsView

urlpatterns = [
    path("records", RecordsView.as_view(), name="runtime-records"),
]
