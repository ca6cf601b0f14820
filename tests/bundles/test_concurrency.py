"""Parallel pushes to one agent on PostgreSQL: numbers are handed out once each, and the same
content pushed at the same moment is still one version."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from apps.audit.services import SystemActor, audit_chain_verify
from apps.bundles import signing
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.tenancy.models import Agent

from ..factories import AgentFactory, TenantFactory
from .conftest import as_yaml, demo_content, on_postgresql

pytestmark = [on_postgresql, pytest.mark.django_db(transaction=True)]
THREADS = 6


def _push_in_parallel(agent: Agent, sources: list[str]) -> list[tuple[int, bool]]:
    barrier = threading.Barrier(len(sources))
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def push(source: str) -> None:
        try:
            barrier.wait(timeout=20)
            pushed = bundle_version_push(
                actor=SystemActor("system:race"), agent=agent, source=source, message="race"
            )
            results.append((pushed.version.number, pushed.created))
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=push, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def _sources(count: int) -> list[str]:
    sources = []
    for steps in range(1, count + 1):
        content = demo_content()
        content["policies"]["limits"]["max_steps"] = steps
        sources.append(as_yaml(content))
    return sources


def test_parallel_pushes__different_content__consecutive_numbers_no_gaps() -> None:
    agent = AgentFactory(tenant=TenantFactory())
    signing.publish_active_key()  # activated before (as at install), not what races here

    results = _push_in_parallel(agent, _sources(THREADS))

    assert sorted(number for number, _ in results) == list(range(1, THREADS + 1))
    assert all(created for _, created in results)
    numbers = list(
        BundleVersion.objects.filter(agent=agent)
        .order_by("number")
        .values_list("number", flat=True)
    )
    assert numbers == list(range(1, THREADS + 1))
    assert audit_chain_verify().ok


def test_parallel_pushes__same_content__one_version() -> None:
    agent = AgentFactory(tenant=TenantFactory())
    signing.publish_active_key()

    results = _push_in_parallel(agent, _sources(1) * THREADS)

    assert {number for number, _ in results} == {1}
    assert sum(created for _, created in results) == 1
    assert BundleVersion.objects.filter(agent=agent).count() == 1
