"""The Celery app: configuration from Django settings (``CELERY_*``), tasks autodiscovered from
each app's ``tasks.py``, and the beat schedule from ``controlplane/schedule.py``, the one file
that lists every periodic task."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.base")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def setup_periodic_tasks(sender: Celery, **kwargs: object) -> None:
    from .schedule import setup_periodic_tasks  # local: needs Django settings, loaded by now

    setup_periodic_tasks(sender)
