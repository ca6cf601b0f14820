"""Tokens in the (read-only, off by default) Django admin: who holds one and its prefix,
never a key (only hashes are stored). The admin site refuses every write."""

from django.contrib import admin

from .models import ApiToken, RuntimeToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "display_prefix", "created_at")
    exclude = ("key_hash",)


@admin.register(RuntimeToken)
class RuntimeTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "environment", "agent", "display_prefix", "revoked_at")
    list_filter = ("tenant",)
    exclude = ("token_hash",)
