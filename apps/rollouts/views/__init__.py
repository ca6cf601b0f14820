"""The browser UI of releases and rollouts (templates under ``templates/rollouts/``)."""

from .plans import plan_edit
from .releases import agent_releases, deploy, rollback
from .rollouts import (
    rollout_action,
    rollout_charts,
    rollout_detail,
    rollout_list,
    rollout_live,
    rollout_start,
)

__all__ = [
    "agent_releases",
    "deploy",
    "plan_edit",
    "rollback",
    "rollout_action",
    "rollout_charts",
    "rollout_detail",
    "rollout_list",
    "rollout_live",
    "rollout_start",
]
