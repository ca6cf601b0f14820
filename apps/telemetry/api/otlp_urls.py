from django.urls import path

from .otlp import OTLPTracesView

urlpatterns = [
    path("otlp/v1/traces", OTLPTracesView.as_view(), name="runtime-otlp-traces"),
]
