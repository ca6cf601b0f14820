from django.urls import path

from . import docs, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("docs/<str:name>/", docs.doc, name="doc"),
]
