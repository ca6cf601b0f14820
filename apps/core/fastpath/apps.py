from django.apps import AppConfig


class FastPathConfig(AppConfig):
    """The runtime fast path (``apps.core.fastpath``). It registers nothing itself: the apps
    that own routes, topics and the token lookup register them (``apps.runtimes.serving``),
    and changes reach it as events (``apps.core.events``)."""

    name = "apps.core.fastpath"
    label = "fastpath"
    verbose_name = "Runtime fast path"
