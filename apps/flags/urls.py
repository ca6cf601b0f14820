from django.urls import path

from .views import flags, kill_switches

app_name = "flags"
urlpatterns = [
    path("flags/", flags.flag_list, name="flag_list"),
    path("flags/new/", flags.flag_create, name="flag_create"),
    path("flags/import/", flags.flag_import, name="flag_import"),
    path("flags/<int:pk>/", flags.flag_detail, name="flag_detail"),
    path("flags/<int:pk>/edit/", flags.flag_edit, name="flag_edit"),
    path("flags/<int:pk>/toggle/", flags.flag_toggle, name="flag_toggle"),
    path("flags/<int:pk>/delete/", flags.flag_delete, name="flag_delete"),
    path("flags/segments/new/", flags.segment_create, name="segment_create"),
    path("flags/segments/<int:pk>/edit/", flags.segment_edit, name="segment_edit"),
    path("flags/segments/<int:pk>/delete/", flags.segment_delete, name="segment_delete"),
    path("flags/kill-switches/", kill_switches.kill_switch_list, name="kill_switch_list"),
    path(
        "flags/kill-switches/engage/", kill_switches.kill_switch_engage, name="kill_switch_engage"
    ),
    path(
        "flags/kill-switches/<int:pk>/release/",
        kill_switches.kill_switch_release,
        name="kill_switch_release",
    ),
]
