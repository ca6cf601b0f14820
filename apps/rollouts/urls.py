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
    path("agents/<int:pk>/rollouts/new/", views.rollout_start, name="rollout_start"),
    path("rollouts/", views.rollout_list, name="rollout_list"),
    path("rollouts/<int:pk>/", views.rollout_detail, name="rollout_detail"),
    path("rollouts/<int:pk>/live/", views.rollout_live, name="rollout_live"),
    path("rollouts/<int:pk>/charts/", views.rollout_charts, name="rollout_charts"),
    path("rollouts/<int:pk>/<slug:event>/", views.rollout_action, name="rollout_action"),
    path("environments/<int:pk>/rollout-plan/", views.plan_edit, name="plan_edit"),
]
