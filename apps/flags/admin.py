"""Read-only admin views: every change goes through the services (validated, audited,
revision bumped), never through the admin."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Flag, KillSwitch, SdkInstance, Segment


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ("name", "environment", "type", "enabled", "updated_at")
    list_filter = ("type", "enabled")
    search_fields = ("name",)


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    list_display = ("segment_id", "name", "environment")


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "scope",
        "tool_pattern",
        "mode",
        "agent",
        "engaged_at",
        "released_at",
    )
    list_filter = ("kind", "scope")


@admin.register(SdkInstance)
class SdkInstanceAdmin(ReadOnlyAdmin):
    list_display = ("app_name", "instance_id", "sdk_version", "environment", "last_seen_at")
