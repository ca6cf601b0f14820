from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.authentication import RuntimeTokenAPIView
from apps.core.api import ErrorSerializer

from ..selectors import runtime_push_url
from ..services import RegistrationRateExceeded, runtime_heartbeat_record
from .serializers import HeartbeatInput, HeartbeatOutput


class HeartbeatView(RuntimeTokenAPIView):
    """Liveness plus ACK (revision applied) or NACK (revision rejected, with the error)."""

    @extend_schema(
        summary="Report a runtime's liveness and ACK or NACK a revision",
        request=HeartbeatInput,
        responses={
            200: HeartbeatOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            429: ErrorSerializer,
        },
        tags=["runtime"],
    )
    def post(self, request: Request) -> Response:
        token = self.runtime_token(request)
        raw_id = request.data.get("instance_id") if isinstance(request.data, dict) else None
        known = (
            runtime_push_url(environment_id=token.environment_id, instance_id=raw_id)
            if isinstance(raw_id, str)
            else None
        )
        serializer = HeartbeatInput(data=request.data, context={"known_push_url": known})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            _, revision = runtime_heartbeat_record(
                token=token,
                instance_id=data["instance_id"],
                report=data["status"] or "",
                revision=data["revision"],
                name=data["name"],
                labels=data["labels"],
                library_version=data["library_version"],
                digests=data["digests"],
                error=data["error"],
                push_url=data["push_url"],
                circuit_breakers=data["circuit_breakers"],
                agents=data["agents"],
            )
        except RegistrationRateExceeded as exc:
            raise Throttled(wait=exc.retry_after_s, detail=str(exc)) from exc
        return Response({"revision": revision})
