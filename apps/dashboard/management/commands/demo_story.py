"""``./manage.py demo_story``: play the living demo's story by hand (``make run`` does it by
itself): the demo's rollout plan and budget, then the rollout of support-bot v2 in production
that the canary analysis rolls back, under the same restart rules
(``apps.dashboard.demo_story``). Needs the demo data (``seed_demo``) and runtimes serving
production with reporting on — the simulated fleet of ``make run`` or ``python -m
dataplane.simulate`` — and a Celery worker and beat for the analysis."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.dashboard.demo_story import story_prepare, story_rollout_start
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Start the living demo's story on the demo tenant acme: its rollout plan and budget, "
        "then the rollout of support-bot v2 in production (at most one an hour)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug="acme").first()
        if tenant is None:
            raise CommandError("No demo tenant acme: run ./manage.py seed_demo first.")
        for line in story_prepare(tenant):
            self.stdout.write(line)
        try:
            self.stdout.write(story_rollout_start(tenant))
        except ValidationError as exc:  # a surprise the story cannot tell around: say it
            raise CommandError(f"demo rollout not started: {' '.join(exc.messages)}") from exc
