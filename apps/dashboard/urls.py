from django.urls import path

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    *[
        path(f"{section}/", views.upcoming, {"section": section}, name=section)
        for section in views.UPCOMING_SECTIONS
    ],
]
