"""API conventions shared by every app: the response envelope, errors with codes, page/limit pagination."""
import copy
import re

from django.core.exceptions import PermissionDenied
from django.http import Http404, QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .errors import CommonError, DomainError


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


# The answer of an operation that reads message bodies when one was encrypted with a key no longer configured.
ENCRYPTION_KEY_UNAVAILABLE = OpenApiResponse(description=(
    "Service unavailable: a stored message was encrypted with a key that is no longer in the installation's "
    "keyring (encryption_key_unavailable); the operator puts the key back and rotates before dropping it."))


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
    elif isinstance(exc, exceptions.Throttled):  # core.throttles; DRF's handler has set Retry-After
        refused_by = getattr(context.get("request"), "throttled_by", None)
        message = refused_by.describe() if refused_by else "Too many requests."
        if exc.wait is not None:
            message += f" Try again in {exc.wait} seconds."
        code, details = CommonError.THROTTLED.value, {"retry_after": exc.wait}
        if refused_by is not None:
            details.update(scope=refused_by.scope, limit=refused_by.num_requests, period=refused_by.duration)
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


MAX_JSON_DEPTH = 32


class StrictJSONParser(JSONParser):
    """JSON bodies as every view may take them: nested at most MAX_JSON_DEPTH deep (a contact card 3,000 levels
    deep was a RecursionError), no NUL character (Postgres stores none) and no unpaired surrogate (not Unicode) in
    any key or string, no NaN or Infinity. Each is 400 invalid_request."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
        problem = _json_problem(data, 1)
        if problem:
            raise exceptions.ParseError(problem)
        return data


class StrictMultiPartParser(MultiPartParser):
    """multipart/form-data with StrictJSONParser's rule for text: no NUL, no unpaired surrogate (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        for key, values in parsed.data.lists():
            problem = _json_problem(key, 1) or next(filter(None, (_json_problem(v, 1) for v in values)), None)
            if problem:
                raise exceptions.ParseError(problem)
        return parsed


def _json_problem(value, depth):
    if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
    if isinstance(value, str):
        if "\x00" in value:
            return "A string holds a NUL character (\\u0000), which no value here may contain."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "A string holds an unpaired surrogate: it is not valid Unicode."
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = _json_problem(key, depth) if isinstance(key, str) else None
        problem = problem or _json_problem(item, depth + 1)
        if problem:
            return problem
    return None


class EnvelopeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        already_wrapped = isinstance(data, dict) and "success" in data and ("data" in data or "error" in data)
        if response is not None and response.status_code == status.HTTP_204_NO_CONTENT:
            return b""
        if not already_wrapped and response is not None:
            data = {"success": response.status_code < 400, "data": data}
        return super().render(data, accepted_media_type, renderer_context)


def whole_number_param(request, name, *, low, high, default, code=CommonError.VALIDATION_ERROR):
    """A query parameter that must be a whole number from low to high when given (400 otherwise, never a silent
    default for a value the schema forbids)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise DomainError(code, f"{name} must be a whole number from {low} to {high}.",
                          {name: [f"A whole number from {low} to {high}."]})
    return int(raw)


def choice_param(request, name, allowed, code):
    """A query parameter that, when given, must be one of `allowed` (an empty value too is refused: 400 `code`)."""
    wanted = request.query_params.get(name)
    if wanted is not None and wanted not in allowed:
        raise DomainError(code, f"Unknown {name} '{wanted}'.", {"allowed": list(allowed)})
    return wanted


class PageLimitPagination(PageNumberPagination):
    """page (from 1) and limit (1 to max_page_size, default page_size). A page past the last is empty, not 404."""

    page_size = 20
    page_query_param = "page"
    page_size_query_param = "limit"
    max_page_size = 100
    max_page = 1_000_000

    def get_page_size(self, request):
        return whole_number_param(request, self.page_size_query_param, low=1, high=self.max_page_size,
                                  default=self.page_size)

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        size = self.get_page_size(request)
        number = whole_number_param(request, self.page_query_param, low=1, high=self.max_page, default=1)
        paginator = self.django_paginator_class(queryset, size)
        self.page = paginator.page(min(number, max(paginator.num_pages, 1)))
        self.number = number
        if number > paginator.num_pages:
            return []
        return list(self.page)

    def get_paginated_response(self, data):
        return Response(
            {
                "success": True,
                "data": data,
                "pagination": {
                    "page": self.number,
                    "limit": self.get_page_size(self.request),
                    "total": self.page.paginator.count,
                    "pages": self.page.paginator.num_pages,
                },
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["success", "data", "pagination"],
            "properties": {
                "success": {"type": "boolean", "enum": [True]},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "required": ["page", "limit", "total", "pages"],
                    "properties": {"page": {"type": "integer", "minimum": 1},
                                   "limit": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
                                   "total": {"type": "integer", "minimum": 0},
                                   "pages": {"type": "integer", "minimum": 0}},
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        return page_parameters(self.max_page_size, self.max_page)


def _expected_json_type(field):
    """(python types, words) a JSON value for `field` must have, or None when any goes. Checked before DRF's own
    validation, which would take 0 for a string ("0") or 0 for a boolean (false): what the schema forbids."""
    if isinstance(field, serializers.BooleanField):
        return (bool,), "true or false"
    if isinstance(field, serializers.IntegerField):
        return (int,), "a whole number"
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return (int, float), "a number"
    if isinstance(field, serializers.CharField | serializers.DateTimeField | serializers.DateField):
        return (str,), "a string"
    if isinstance(field, serializers.ChoiceField) and all(isinstance(key, str) for key in field.choices):
        return (str,), "a string"
    if isinstance(field, serializers.ListField | serializers.ListSerializer | serializers.MultipleChoiceField):
        return (list,), "a list"
    if isinstance(field, serializers.DictField | serializers.Serializer):
        return (dict,), "an object"
    return None


# A character a person can see, the same set in the schema's regex dialect (ECMA-262: \s adds U+FEFF) and in
# Python's (\s and str.strip() add U+001C-U+001F and U+0085): outside both kinds of white space and not NUL. A text
# the schema says "has something to read" matches VISIBLE_CHAR; the server asks has_visible_text(), so the two agree.
VISIBLE_CHAR = r"[^\s\u001c-\u001f\u0085\ufeff\u0000]"
_VISIBLE = re.compile(VISIBLE_CHAR)


def has_visible_text(value):
    return isinstance(value, str) and _VISIBLE.search(value) is not None


def field_with_schema(field_class, schema, **kwargs):
    """A `field_class` field whose OpenAPI schema is `schema`: for a rule the domain code enforces with its own
    error code (a text's length: text_too_long), stated in the schema without DRF enforcing it first with
    another."""
    documented = extend_schema_field(schema)(type(f"Documented{field_class.__name__}", (field_class,), {}))
    return documented(**kwargs)


# A request body's values must have the JSON type the schema gives them: a string where a string goes, true/false
# for a boolean, a number (never a boolean) for a number; a field the schema does not name is refused (the schema
# says additionalProperties: false). Form posts (all strings) keep DRF's coercion. (A comment, not a docstring:
# drf-spectacular would make a docstring every request component's description.)
class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            errors = {name: ["Unknown field."] for name in data if name not in self.fields}
            for field in self._writable_fields:
                value = data.get(field.field_name, serializers.empty)
                if value is serializers.empty or value is None:
                    continue  # missing and null: DRF's required/allow_null rules answer
                expected = _expected_json_type(field)
                if expected and (not isinstance(value, expected[0]) or (isinstance(value, bool)
                                                                         and bool not in expected[0])):
                    errors[field.field_name] = [f"Must be {expected[1]}."]
            if errors:
                raise exceptions.ValidationError(errors)
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


# A Serializer for request bodies on hot paths (every message sent). DRF deep-copies the declared fields for every
# serializer it makes, which builds each field anew, validators and all: half the cost of validating a message.
# Here the declared fields are deep-copied once per class, and each serializer gets shallow copies of them (its own
# objects to bind, sharing only what DRF never changes: validators, error messages).
class CopiedFieldsSerializer(StrictSerializer):

    def get_fields(self):
        prototypes = type(self).__dict__.get("_prototype_fields")
        if prototypes is None:
            prototypes = copy.deepcopy(self._declared_fields)
            type(self)._prototype_fields = prototypes
        return {name: copy.copy(field) for name, field in prototypes.items()}


def page_parameters(max_limit=100, max_page=1_000_000):
    """The page and limit query parameters as the schema states them (PageLimitPagination enforces the same)."""
    return [
        {"name": "page", "in": "query", "required": False, "description": "Page number, from 1.",
         "schema": {"type": "integer", "minimum": 1, "maximum": max_page}},
        {"name": "limit", "in": "query", "required": False, "description": "Items per page (default 20).",
         "schema": {"type": "integer", "minimum": 1, "maximum": max_limit}},
    ]


PAGE_PARAMETERS = [
    OpenApiParameter("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                     description="Page number, from 1."),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100},
                     description="Items per page (default 20)."),
]


def paginated(request, view, queryset, to_payload):
    """One page of `queryset` (page/limit) in the envelope, each row through `to_payload`."""
    paginator = PageLimitPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response([to_payload(row) for row in page])
