"""Errors outside the views' own handling, answered the way the caller reads them: the JSON envelope under /api/
(never HTML, whatever DEBUG says), a branded page of the site's layout elsewhere.

RequestGuardMiddleware runs first for every request: it gives each request an id (the X-Request-ID header, in
logs and in a 500's details), refuses a NUL byte in the path or the query (Postgres cannot store one, and no
view should have to check), and turns what escapes a view under /api/ into the envelope: a body over
DATA_UPLOAD_MAX_MEMORY_SIZE is 413 request_too_large, anything unexpected 500 internal_error. The handlers below
are Django's handler400/403/404/500 (config.urls). With DEBUG on (a development machine) Django answers an address
that matches no URL (or a view's Http404) with its technical page, listing every route: the guard answers those
with the branded page (JSON under /api/) instead.
"""
import logging
import uuid

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader

from core.api import error_body
from core.errors import DomainError, EncryptionError

log = logging.getLogger("switchboard.errors")

API_PREFIX = "/api/"


def is_api(request):
    return request.path_info.startswith(API_PREFIX)


def api_error(request, status, code, message, details=None):
    return JsonResponse(error_body(code, message, details), status=status)


class RequestGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.id = uuid.uuid4().hex
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path_info or "%00" in query or "\x00" in query:
            response = self._refuse_nul(request)
        else:
            response = self.get_response(request)
            if settings.DEBUG and response.status_code == 404 and response.get("Content-Type", "").startswith(
                    "text/html") and getattr(response, "technical_404", True):
                response = not_found(request)  # Django's technical page lists every route
        response["X-Request-ID"] = request.id
        return response

    def _refuse_nul(self, request):
        message = "The address holds a NUL character (%00), which no name or value here may contain."
        if is_api(request):
            return api_error(request, 400, "invalid_request", message)
        return render(request, "errors/400.html", {"message": message}, status=400)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError) and exception.code == EncryptionError.KEY_UNAVAILABLE:
            # A stored value no configured key opens (core.crypto): the operator's to fix, said plainly.
            log.error("request %s %s: %s", request.id, request.path, exception.message)
            if is_api(request):
                return api_error(request, 503, exception.code.value, exception.message)
            return render(request, "errors/503.html", {"message": exception.message, "code": exception.code.value},
                          status=503)
        if not is_api(request):
            return None  # Django's handlers (below) answer pages
        if isinstance(exception, RequestDataTooBig):
            return api_error(request, 413, "request_too_large",
                             "The request body is larger than this server accepts; send less, or files as uploads.")
        if isinstance(exception, Http404):
            return not_found(request, exception)
        if isinstance(exception, PermissionDenied):
            return forbidden(request, exception)
        if isinstance(exception, SuspiciousOperation):
            return bad_request(request, exception)
        log.error("request %s %s failed", request.id, request.path, exc_info=exception)
        return server_error(request)


def bad_request(request, exception=None):
    if is_api(request):
        return api_error(request, 400, "invalid_request", "The request could not be understood.")
    return render(request, "errors/400.html", {}, status=400)


def forbidden(request, exception=None):
    if is_api(request):
        return api_error(request, 403, "permission_denied", "You may not do this.")
    # Views refuse with a sentence written for the person (PermissionDenied("Only an owner can …")): say it.
    reason = str(exception) if isinstance(exception, PermissionDenied) and exception.args else ""
    return render(request, "errors/403.html", {"reason": reason}, status=403)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a form posted without its token (open too long, cookies off) is the branded 403 with what
    to do, not Django's bare "403 Forbidden"."""
    if is_api(request):
        return api_error(request, 403, "permission_denied", "CSRF check failed: send the X-CSRFToken header with "
                         "session authentication, or use an API key.")
    return render(request, "errors/403.html", {"csrf": True}, status=403)


def not_found(request, exception=None):
    if is_api(request):
        return api_error(request, 404, "not_found",
                         f"Nothing at {request.path}: see /api/docs/ for the endpoints.")
    response = render(request, "errors/404.html", {}, status=404)
    response.technical_404 = False  # ours: the guard leaves it as it is
    return response


def server_error(request):
    request_id = getattr(request, "id", "")
    if is_api(request):
        return api_error(request, 500, "internal_error",
                         "Something went wrong on our side. Try again, and quote the request id if it keeps "
                         "happening.", {"request_id": request_id})
    # Rendered without the request's context processors: they read the database, which may be what failed.
    return HttpResponseServerError(loader.get_template("errors/500.html").render({"request_id": request_id}))
