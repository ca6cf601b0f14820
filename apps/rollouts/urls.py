from django.urls import path

from . import views

app_name = "rollouts"
urlpatterns = [
    path("agents/<int:pk>/releases/", views.agent_releases, name="agent_releases"),
    path("agents/<int:pk>/deploy/", views.deploy, name="deploy"),
    path(
        "agents/<int:pk>/environments/<int:environment_pk>/rollback/",
        views.rollback,
        name="rollback",
    ),
]
