from django.urls import path

from . import docs, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("docs/screenshots/<str:name>", docs.doc_screenshot, name="doc_screenshot"),
    path("docs/<path:name>/", docs.doc, name="doc"),
]
