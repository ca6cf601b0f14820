from django.apps import AppConfig


class BundlesConfig(AppConfig):
    name = "apps.bundles"
    label = "bundles"
    verbose_name = "Bundles"
