"""ASGI entry point: the runtime fast path in front of Django (see apps/core/fastpath)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.base")
django_application = get_asgi_application()

from apps.core.fastpath.app import FastPath  # noqa: E402 - after Django is set up

application = FastPath(django_application)
