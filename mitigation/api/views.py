"""The control-plane API: signals in; attacks, mitigations, actions and decisions out; approvals and withdrawals.

The same views serve the provider's domain (every tenant) and each tenant's domain (that tenant only), through
the selectors in mitigation.selectors; the scrubbing centers' reports (`CenterReportView`) the provider's only.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collector.signals import AttackSignal
from core.accounts.choices import ApiTokenScopeChoices, UserRoleChoices
from core.accounts.models import ApiToken
from core.errors import ValidationProblem
from core.permissions import OperatorWrites, RolePermission, request_actor
from devices.api.serializers import ScrubbingCenterSerializer
from devices.models import ScrubbingCenter
from mitigation import selectors
from mitigation.api.serializers import (
    ActionSerializer,
    AttackSerializer,
    CenterPrefixSampleSerializer,
    CenterReportSerializer,
    DecisionSerializer,
    MitigationSerializer,
    MoveSerializer,
    ReasonSerializer,
    SignalSerializer,
)
from mitigation.api.throttling import SignalRateThrottle
from mitigation.models import Action, Attack, Decision, Mitigation
from mitigation.services import lifecycle
from mitigation.services.center_reports import record_center_report
from mitigation.services.signals import attribute_target, record_signal


class SignalPermission(RolePermission):
    """Posting signals needs an operator role; a token also needs the `signals` scope."""

    def has_permission(self, request: Request, view: object) -> bool:
        user = request.user
        if not user or not user.is_authenticated or not user.has_role(UserRoleChoices.OPERATOR):
            return False
        token = request.auth
        return not isinstance(token, ApiToken) or "signals" in token.scopes


class SignalView(APIView):
    """Record an attack signal. At a tenant's domain the target must lie in that tenant's verified space."""

    permission_classes = [IsAuthenticated, SignalPermission]
    throttle_classes = [SignalRateThrottle]

    @extend_schema(request=SignalSerializer, responses={202: AttackSerializer, 200: None})
    def post(self, request: Request) -> Response:
        serializer = SignalSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        signal = AttackSignal(
            target=data["target"], vectors=tuple(data["vectors"]), bps=data["bps"], pps=data["pps"],
            phase=data["phase"], detector=data["detector"], top_sources=tuple(data.get("top_sources", ())),
        )
        tenant = selectors.request_tenant(request)
        if tenant is not None:
            owner = attribute_target(ipaddress.ip_network(signal.target))
            if owner is None or owner.pk != tenant.pk:
                raise ValidationProblem("target", "is not inside a verified prefix of this tenant")
        attack = record_signal(signal, acting_user=request_actor(request))
        if attack is None:
            return Response({"status": "no active attack on this target"}, status=status.HTTP_200_OK)
        return Response(AttackSerializer(attack).data, status=status.HTTP_202_ACCEPTED)


class TelemetryToken(BasePermission):
    """Only an operator's API token with the telemetry scope: appliances never log in with a session.

    Tokens are looked up in the schema of the request's domain, so a tenant's token is unknown here anyway.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        return (isinstance(token, ApiToken) and ApiTokenScopeChoices.TELEMETRY in token.scopes
                and bool(request.user and request.user.is_active))


class CenterReportView(APIView):
    """A scrubbing center's load report, with per diverted prefix what it received, dropped and returned clean.

    Posted by the center's appliances every telemetry interval, at the provider's domain only. A report with a
    prefix not diverted to this center, or any malformed part, is a 400 naming the field and stores nothing.
    """

    permission_classes = [TelemetryToken]

    @extend_schema(request=CenterReportSerializer, responses={200: ScrubbingCenterSerializer})
    def post(self, request: Request, slug: str) -> Response:
        center = get_object_or_404(ScrubbingCenter, slug=slug)
        body = CenterReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        report = record_center_report(
            center, load_gbps=data["load_gbps"], load_mpps=data["load_mpps"],
            healthy=data.get("healthy", center.healthy), prefixes=data.get("prefixes", []),
            acting_user=request_actor(request),
        )
        return Response(ScrubbingCenterSerializer(report.center).data, status=status.HTTP_200_OK)


class AttackViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AttackSerializer
    permission_classes = [RolePermission]
    filterset_fields = ["status"]
    queryset = Attack.objects.none()

    def get_queryset(self) -> QuerySet[Attack]:
        return selectors.attacks_for(selectors.request_tenant(self.request))


class MitigationViewSet(viewsets.ReadOnlyModelViewSet):
    """Mitigations; POST approve / reject / withdraw on one (operator role or above)."""

    serializer_class = MitigationSerializer
    permission_classes = [OperatorWrites]
    filterset_fields = ["state", "level"]
    queryset = Mitigation.objects.none()

    def get_queryset(self) -> QuerySet[Mitigation]:
        return selectors.mitigations_for(selectors.request_tenant(self.request)).prefetch_related(
            "actions__deployments"
        )

    def _act(self, request: Request, verb: str) -> Response:
        mitigation = self.get_object()
        reason = ReasonSerializer(data=request.data)
        reason.is_valid(raise_exception=True)
        updated = lifecycle.MITIGATION_ACTIONS[verb](
            mitigation.pk, acting_user=request_actor(request), reason=reason.validated_data["reason"]
        )
        return Response(MitigationSerializer(updated, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ReasonSerializer, responses={202: MitigationSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "approve")

    @extend_schema(request=ReasonSerializer, responses={202: MitigationSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "reject")

    @extend_schema(request=ReasonSerializer, responses={202: MitigationSerializer})
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "withdraw")

    @extend_schema(request=ReasonSerializer, responses={202: MitigationSerializer})
    @action(detail=True, methods=["post"])
    def escalate(self, request: Request, pk: str | None = None) -> Response:
        """One step up the ladder, kept by planning (provider operators only)."""
        self._operators_only(request)
        return self._act(request, "escalate")

    @extend_schema(request=MoveSerializer, responses={202: MitigationSerializer})
    @action(detail=True, methods=["post"])
    def move(self, request: Request, pk: str | None = None) -> Response:
        """To another scrubbing center, kept by planning (provider operators only)."""
        self._operators_only(request)
        mitigation = self.get_object()
        body = MoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        center = ScrubbingCenter.objects.filter(slug=body.validated_data["center"]).first()
        if center is None:
            raise ValidationProblem("center", "no such scrubbing center")
        updated = lifecycle.move_mitigation(mitigation.pk, center_id=center.pk, acting_user=request_actor(request),
                                           reason=body.validated_data["reason"])
        return Response(MitigationSerializer(updated, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: CenterPrefixSampleSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="center-reports", filter_backends=[])
    def center_reports(self, request: Request, pk: str | None = None) -> Response:
        """What the scrubbing centers reported for this mitigation's diverted prefixes, newest first (paginated)."""
        mitigation = self.get_object()
        samples = mitigation.center_samples.select_related("center").order_by("-at", "-id")
        page = self.paginate_queryset(samples)
        if page is None:
            return Response(CenterPrefixSampleSerializer(samples, many=True).data)
        return self.get_paginated_response(CenterPrefixSampleSerializer(page, many=True).data)

    def _operators_only(self, request: Request) -> None:
        if selectors.request_tenant(request) is not None:
            raise NotFound()


class ActionFilter(django_filters.FilterSet):
    # A plain number, not a choice among every mitigation: another tenant's id must answer like a missing one
    # (an empty page), never "not a valid choice" for one and an empty page for the other.
    mitigation = django_filters.NumberFilter(field_name="mitigation_id")

    class Meta:
        model = Action
        fields = ["status", "kind"]


class DecisionFilter(django_filters.FilterSet):
    mitigation = django_filters.NumberFilter(field_name="mitigation_id")

    class Meta:
        model = Decision
        fields: list[str] = []


class ActionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ActionSerializer
    permission_classes = [RolePermission]
    filterset_class = ActionFilter
    queryset = Action.objects.none()

    def get_queryset(self) -> QuerySet[Action]:
        return selectors.actions_for(selectors.request_tenant(self.request)).prefetch_related("deployments")


class DecisionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DecisionSerializer
    permission_classes = [RolePermission]
    filterset_class = DecisionFilter
    queryset = Decision.objects.none()

    def get_queryset(self) -> QuerySet[Decision]:
        return selectors.decisions_for(selectors.request_tenant(self.request))

