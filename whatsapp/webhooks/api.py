"""Webhook endpoints and their deliveries over the API (routes: urlpatterns below, included under /api/v1/).

Any member reads endpoints and deliveries and may replay a delivery; creating, changing and deleting endpoints
(which decide where the tenant's messages go) are for owners and admins. Writes need a paying tenant (402).
Ids only ever find the caller's own tenant's rows (its schema): another tenant's id is a 404.
"""
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core.api import (
    PAGE_PARAMETERS,
    PageLimitPagination,
    StrictModelSerializer,
    StrictSerializer,
    choice_param,
    field_with_schema,
)
from core.errors import CommonError, DomainError
from core.net import HTTP_URL_PATTERN
from core.permissions import Perm
from tenants.permissions import HasActiveTenant

from . import EVENTS, actions
from . import delivery as wire
from .errors import WebhookError
from .models import WebhookDelivery, WebhookEndpoint

TAGS = ["webhooks"]


class WebhookEndpointSerializer(StrictModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "enabled", "ordered", "disabled_reason", "disabled_at",
                  "created_at"]
        read_only_fields = fields


class WebhookDeliverySerializer(StrictModelSerializer):
    attempts_log = serializers.JSONField(source="attempt_log", read_only=True,
                                         help_text="[{at, status_code, duration_ms, error, response}], oldest first")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "endpoint", "event_type", "webhook_id", "status", "attempts", "next_attempt_at",
                  "last_status_code", "last_error", "last_duration_ms", "succeeded_at", "created_at", "payload",
                  "attempts_log"]
        read_only_fields = fields


class EndpointWriteSerializer(StrictSerializer):
    url = field_with_schema(serializers.CharField, {"type": "string", "format": "uri", "maxLength": 2000,
                                                    "pattern": HTTP_URL_PATTERN},
                            max_length=2000, help_text="The http(s) URL that receives the events (a public address).")
    # Unknown event names are answered unknown_event (below), so the enum is the schema's, not DRF's.
    events = field_with_schema(serializers.ListField, {"type": "array", "minItems": 1, "maxItems": 20,
                                                       "items": {"type": "string", "enum": list(EVENTS)}},
                               child=serializers.CharField(max_length=40), allow_empty=False, max_length=20)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False)
    ordered = serializers.BooleanField(
        required=False, help_text="One delivery at a time, in event order (default false: concurrent, faster; "
                                  "receivers order by the payload's timestamp). A failing delivery holds the "
                                  "ones after it until it succeeds or is dead-lettered.")


def _validated(request, *, partial):
    serializer = EndpointWriteSerializer(data=request.data, partial=partial)
    if not serializer.is_valid():
        errors = serializer.errors
        if "url" in errors:
            raise DomainError(WebhookError.INVALID_URL, "url: give the http(s) URL that receives the events.", errors)
        if "events" in errors:
            raise DomainError(WebhookError.INVALID_EVENTS, "events: give a list of event names.", errors)
        raise DomainError(CommonError.VALIDATION_ERROR, "Invalid request.", errors)
    data = dict(serializer.validated_data)
    if "events" in data:
        unknown = [e for e in data["events"] if e not in EVENTS]
        if unknown:
            raise DomainError(WebhookError.UNKNOWN_EVENT, f"Unknown event '{unknown[0]}'.", {"allowed": EVENTS})
        data["events"] = list(dict.fromkeys(data["events"]))
    if "url" in data:
        data["url"] = data["url"].strip()
        try:
            wire.check_target(data["url"])
        except wire.TargetError as exc:
            raise DomainError(exc.code, exc.message, {"url": data["url"]}) from exc
    return data


class WebhookView(APIView):
    required_permission = Perm.WEBHOOKS_MANAGE
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]


NEW_ENDPOINT = inline_serializer("NewWebhookEndpoint", {
    "endpoint": WebhookEndpointSerializer(),
    "secret": serializers.CharField(help_text="whsec_… signing secret. Shown once: store it now."),
})


class EndpointListView(WebhookView):
    required_permissions = {"GET": Perm.WEBHOOKS_READ, "POST": Perm.WEBHOOKS_MANAGE}

    @extend_schema(tags=TAGS, parameters=PAGE_PARAMETERS,
                   responses=WebhookEndpointSerializer(many=True))
    def get(self, request):
        """The tenant's webhook endpoints, oldest first (their secrets are never shown again)."""
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(WebhookEndpoint.objects.all(), request, view=self)
        return paginator.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(tags=TAGS, request=EndpointWriteSerializer, responses={201: NEW_ENDPOINT})
    def post(self, request):
        """Register an endpoint (owner or admin). 400 invalid_url, unknown_event, private_target,
        unresolvable_host. The response holds the signing secret, once."""
        data = _validated(request, partial=False)
        endpoint, secret = actions.create_endpoint(request._request.tenant, acting_user=request.user, url=data["url"],
                                                   events=data["events"], description=data.get("description", ""),
                                                   enabled=data.get("enabled", True),
                                                   ordered=data.get("ordered", False))
        return Response({"endpoint": WebhookEndpointSerializer(endpoint).data, "secret": secret}, status=201)


class EndpointDetailView(WebhookView):
    required_permissions = {"GET": Perm.WEBHOOKS_READ, "PATCH": Perm.WEBHOOKS_MANAGE,
                            "DELETE": Perm.WEBHOOKS_MANAGE}

    @extend_schema(tags=TAGS, responses=WebhookEndpointSerializer)
    def get(self, request, pk):
        return Response(WebhookEndpointSerializer(get_object_or_404(WebhookEndpoint, pk=pk)).data)

    @extend_schema(tags=TAGS, request=EndpointWriteSerializer, responses=WebhookEndpointSerializer)
    def patch(self, request, pk):
        """Change url, events, description, ordered or enabled (owner or admin); enabling clears
        disabled_reason."""
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        endpoint = actions.update_endpoint(request._request.tenant, endpoint, acting_user=request.user,
                                           **_validated(request, partial=True))
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request, pk):
        """Delete the endpoint and its deliveries (owner or admin)."""
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        actions.delete_endpoint(request._request.tenant, endpoint, acting_user=request.user)
        return Response(status=204)


class DeliveryListView(WebhookView):
    required_permission = Perm.WEBHOOKS_READ

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("status", str, enum=WebhookDelivery.Status.values),
        *PAGE_PARAMETERS,
    ], responses=WebhookDeliverySerializer(many=True))
    def get(self, request, pk):
        """The endpoint's deliveries, newest first, each with its attempts (dead-lettered ones: status=dead)."""
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        deliveries = endpoint.deliveries.all()
        wanted = choice_param(request, "status", WebhookDelivery.Status.values, WebhookError.INVALID_STATUS)
        if wanted is not None:
            deliveries = deliveries.filter(status=wanted)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class ReplayView(WebhookView):
    @extend_schema(tags=TAGS, request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request, pk):
        """Attempt the delivery again now, whatever its status (dead too), same webhook-id. 409 endpoint_disabled."""
        delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint"), pk=pk)
        delivery = actions.replay_delivery(request._request.tenant, delivery, acting_user=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=202)


urlpatterns = [
    path("webhooks", EndpointListView.as_view(), name="api_webhooks"),
    path("webhooks/<int:pk>", EndpointDetailView.as_view(), name="api_webhook"),
    path("webhooks/<int:pk>/deliveries", DeliveryListView.as_view(), name="api_webhook_deliveries"),
    path("webhook-deliveries/<int:pk>/replay", ReplayView.as_view(), name="api_webhook_delivery_replay"),
]
