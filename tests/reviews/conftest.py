# The telemetry tests' agent and runtime token: reviews grade sessions of reported records.
from tests.telemetry.conftest import agent, token, token_and_raw  # noqa: F401
