"""API conventions shared by every app: the response envelope, errors with codes, page/limit pagination."""
import copy

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .errors import DomainError


def first_message(detail):
    if isinstance(detail, list) and detail:
        return first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = first_message(value)
        return inner if key == "non_field_errors" else f"{key}: {inner}"
    return str(detail)


DEFAULT_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_body(code, message, details=None):
    return {"success": False, "error": {"code": code, "message": message, "details": details}}


def envelope_exception_handler(exc, context):
    """The one place the API turns errors into answers: a DomainError by its code's status, DRF's own exceptions
    (authentication, validation, throttles, 404s) by theirs; every answer is the error envelope."""
    from rest_framework.views import exception_handler, set_rollback  # here: rest_framework.views reads settings

    if isinstance(exc, DomainError):
        set_rollback()
        headers = {"Retry-After": str(int(exc.wait))} if exc.wait is not None else None
        code = "not_found" if exc.status == 404 else exc.code.value  # a 404 is always not_found
        return Response(error_body(code, exc.message, exc.details), status=exc.status, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message, details = "validation_error", first_message(exc.detail), exc.detail
    else:
        specific = exc.get_codes() if isinstance(exc, APIException) else None
        if isinstance(specific, str) and specific != getattr(exc, "default_code", None):
            code = specific  # raised with its own code, e.g. AuthenticationFailed(code="api_key_revoked")
        else:
            code = DEFAULT_CODES.get(response.status_code, getattr(exc, "default_code", "error"))
        if isinstance(exc.detail, dict | list):
            message, details = first_message(exc.detail), exc.detail
        else:
            message, details = str(exc.detail), None
    if response.status_code == 404:
        code = "not_found"
    response.data = error_body(code, message, details)
    return response


class EnvelopeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        already_wrapped = isinstance(data, dict) and "success" in data and ("data" in data or "error" in data)
        if response is not None and response.status_code == status.HTTP_204_NO_CONTENT:
            return b""
        if not already_wrapped and response is not None:
            data = {"success": response.status_code < 400, "data": data}
        return super().render(data, accepted_media_type, renderer_context)


class PageLimitPagination(PageNumberPagination):
    page_size = 20
    page_query_param = "page"
    page_size_query_param = "limit"
    max_page_size = 100

    def get_paginated_response(self, data):
        return Response(
            {
                "success": True,
                "data": data,
                "pagination": {
                    "page": self.page.number,
                    "limit": self.get_page_size(self.request),
                    "total": self.page.paginator.count,
                    "pages": self.page.paginator.num_pages,
                },
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "properties": {
                "success": {"type": "boolean"},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "properties": {k: {"type": "integer"} for k in ("page", "limit", "total", "pages")},
                },
            },
        }


class CopiedFieldsSerializer(serializers.Serializer):
    """A Serializer for request bodies on hot paths (every message sent). DRF deep-copies the declared fields for
    every serializer it makes, which builds each field anew, validators and all: half the cost of validating a
    message. Here the declared fields are deep-copied once per class, and each serializer gets shallow copies
    of them (its own objects to bind, sharing only what DRF never changes: validators, error messages)."""

    def get_fields(self):
        prototypes = type(self).__dict__.get("_prototype_fields")
        if prototypes is None:
            prototypes = copy.deepcopy(self._declared_fields)
            type(self)._prototype_fields = prototypes
        return {name: copy.copy(field) for name, field in prototypes.items()}


PAGE_PARAMETERS = [OpenApiParameter("page", int), OpenApiParameter("limit", int, description="At most 100.")]


def paginated(request, view, queryset, to_payload):
    """One page of `queryset` (page/limit) in the envelope, each row through `to_payload`."""
    paginator = PageLimitPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response([to_payload(row) for row in page])
