"""Every write to flags, segments and kill switches (authorised, validated, audited, one
transaction, revision bumped), and the recording of what Unleash SDKs report."""

from .flags import (
    flag_create,
    flag_delete,
    flag_toggle,
    flag_update,
    segment_create,
    segment_delete,
    segment_update,
)
from .imports import ImportResult, flags_import
from .kill_switches import (
    kill_switch_engage,
    kill_switch_release,
    kill_switch_validate,
    kill_switch_warnings,
)
from .usage import (
    MetricsResult,
    SdkRegistrationRateExceeded,
    flag_metrics_record,
    sdk_instance_register,
)

__all__ = [
    "ImportResult",
    "MetricsResult",
    "SdkRegistrationRateExceeded",
    "flag_create",
    "flag_delete",
    "flag_metrics_record",
    "flag_toggle",
    "flag_update",
    "flags_import",
    "kill_switch_engage",
    "kill_switch_release",
    "kill_switch_validate",
    "kill_switch_warnings",
    "sdk_instance_register",
    "segment_create",
    "segment_delete",
    "segment_update",
]
