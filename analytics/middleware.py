"""Counts every API request of a tenant (analytics.usage): after the view, when the request ran for a tenant (an
API key's, or the signed-in user's). Counting never fails a request."""
import logging
import time

from . import metrics, usage

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1/"


class ApiUsageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith(API_PREFIX):
            tenant = getattr(request, "tenant", None)
            if tenant is not None and getattr(tenant, "has_schema", False):
                key = getattr(request, "api_key", None)
                try:
                    usage.count_request(tenant.schema_name, key.pk if key is not None else None)
                except Exception:
                    log.warning("API usage not counted", exc_info=True)
        return response


class RequestMetricsMiddleware:
    """HTTP requests by kind, method and status class, and their latency, for /metrics (analytics.metrics)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            metrics.observe(request, response, time.perf_counter() - started)
        except Exception:
            log.warning("request not counted in the metrics", exc_info=True)
        return response
