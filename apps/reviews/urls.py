from django.urls import path

from . import views

app_name = "reviews"
urlpatterns = [
    path("agents/<int:pk>/reviews/", views.queue, name="queue"),
    path("agents/<int:pk>/reviews/grade/", views.grade, name="grade"),
    path("agents/<int:pk>/reviews/policy/", views.policy, name="policy"),
]
