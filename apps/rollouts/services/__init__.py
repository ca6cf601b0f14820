"""Every write to the release of an agent in an environment: immediate deploys and
rollbacks of the stable version (``deployments``), staged rollouts and their state machine
(``rollouts``), rollout plans (``plans``)."""

from .deployments import deployment_create, deployment_rollback
from .plans import rollout_plan_set
from .rollouts import (
    RollbackOutcome,
    TransitionResult,
    release_rollback,
    rollout_gate_failures,
    rollout_start,
    rollout_transition,
    transition_allowed,
    transition_refusal,
)

__all__ = [
    "RollbackOutcome",
    "TransitionResult",
    "deployment_create",
    "deployment_rollback",
    "release_rollback",
    "rollout_gate_failures",
    "rollout_plan_set",
    "rollout_start",
    "rollout_transition",
    "transition_allowed",
    "transition_refusal",
]
