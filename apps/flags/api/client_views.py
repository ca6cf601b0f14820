"""The writing half of the Unleash client API: SDK registration and usage metrics. Both
answer 202 (the Python SDK drops a metrics bucket answered with anything else) and are
authenticated by a runtime token, sent bare or as ``Bearer``, as the SDKs send it."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.authentication import RuntimeTokenAPIView
from apps.core.api import ErrorSerializer

from ..services import SdkRegistrationRateExceeded, flag_metrics_record, sdk_instance_register
from ..validation import parse_metrics_toggles
from .serializers import ClientMetricsInput, ClientMetricsOutput, ClientRegisterInput

CLIENT_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer}
# Unleash answers 202 with no content; an empty JSON object is what SDKs ignore just as well.
ACCEPTED = OpenApiTypes.OBJECT


class ClientRegisterView(RuntimeTokenAPIView):
    """An Unleash SDK announces itself (app name, instance, SDK version, strategies)."""

    @extend_schema(
        summary="Register an Unleash SDK instance",
        request=ClientRegisterInput,
        responses={202: ACCEPTED, **CLIENT_ERRORS},
        tags=["unleash-client"],
    )
    def post(self, request: Request) -> Response:
        serializer = ClientRegisterInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            sdk_instance_register(
                token=self.runtime_token(request),
                app_name=data["appName"],
                instance_id=data["instanceId"],
                sdk_version=data["sdkVersion"],
                strategies=data["strategies"],
                started=data["started"],
                interval_ms=data["interval"],
            )
        except SdkRegistrationRateExceeded as exc:
            raise Throttled(wait=exc.retry_after_s, detail=str(exc)) from exc
        return Response({}, status=status.HTTP_202_ACCEPTED)


class ClientMetricsView(RuntimeTokenAPIView):
    """An Unleash SDK reports how often each flag evaluated to yes / no and which variants.

    Read liberally where the meaning is plain (``null`` counts and variants are none) and
    flag by flag: the counts of flags that exist in the token's environment are added;
    unknown flag names are ignored and listed in the answer (202). A wrong entry (a
    negative, fractional or oversized count, a hidden character in a name) is refused with
    a 400 naming its field; the valid entries of the same bucket are still recorded, and
    the 400 says how many, so no bucket loses its good counts to one bad one."""

    @extend_schema(
        summary="Send an Unleash SDK's evaluation counts",
        request=ClientMetricsInput,
        responses={202: ClientMetricsOutput, **CLIENT_ERRORS},
        tags=["unleash-client"],
    )
    def post(self, request: Request) -> Response:
        serializer = ClientMetricsInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        toggles = parse_metrics_toggles(data["bucket"].get("toggles"))
        if toggles.unusable or (toggles.refused and not toggles.counted):
            raise ValidationError(toggles.problems.errors)  # nothing to record: change nothing
        result = flag_metrics_record(
            token=self.runtime_token(request),
            app_name=data["appName"],
            instance_id=data["instanceId"],
            start=data["bucket"]["start"],
            toggles=toggles.counted,
        )
        if toggles.refused:
            raise ValidationError(
                {
                    **toggles.problems.errors,
                    "non_field_errors": [
                        f"{len(toggles.refused)} flag(s) refused; the counts of "
                        f"{result.recorded} other flag(s) were recorded."
                    ],
                }
            )
        return Response(result.as_dict(), status=status.HTTP_202_ACCEPTED)
