"""Which tools agents run where: a seam of the kernel, so that an app of a lower layer
(``flags``: a kill switch's confirmation) can ask what an app above it knows (``rollouts``:
which bundle versions are deployed, and so which tools they declare).

The app that knows registers one provider at start-up (``register``); callers ask through
``deployed_tools``. Without a provider (an app list without rollouts) the answer is
``None``: "unknown", which callers must not read as "no tools"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentTools:
    """One agent and the tool names its deployed versions declare (the stable version of
    each environment, and the candidate of a rollout serving there). ``environments`` are
    the names of the environments it is deployed in; empty: deployed nowhere."""

    agent_id: int
    agent_slug: str
    tools: frozenset[str]
    environments: tuple[str, ...]


# (tenant_id or None for every tenant, agent_id or None, environment_id or None) -> agents
Provider = Callable[[int | None, int | None, int | None], list[AgentTools]]
_PROVIDER: list[Provider] = []


def register(provider: Provider) -> None:
    """Install the provider (the last one registered wins: tests and reloads re-register)."""
    _PROVIDER[:] = [provider]


def deployed_tools(
    *, tenant_id: int | None, agent_id: int | None = None, environment_id: int | None = None
) -> list[AgentTools] | None:
    """The active agents of ``tenant_id`` (every tenant when None), narrowed to one agent
    and/or one environment, each with the tools of its deployed versions; agents deployed
    nowhere are listed with no tools. ``None`` when no app provides the answer."""
    if not _PROVIDER:
        return None
    return _PROVIDER[0](tenant_id, agent_id, environment_id)
