"""Sessions over the API: /api/v1/sessions… and, with the simulator, /api/v1/test-helpers/sessions/{name}/….

The tenant comes from the principal (API key or logged-in user) and the request runs in its schema, so a session
name only ever finds the caller's own sessions: another tenant's name is a 404 like an unknown one.
Roles: any member may read, start, restart and link a session; creating, deleting and unlinking the phone (logout)
are for owners and admins. Writes that need a paying tenant (create, start, restart, pairing code)
answer 402 payment_required while it is read-only; delete and unlinking stay possible, as taking things away is.
"""
import base64
import binascii
import time

from django.conf import settings
from django.urls import path
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, PageLimitPagination, choice_param, whole_number_param
from core.errors import DomainError
from core.permissions import Perm, can
from core.phones import normalize_phone
from tenants.permissions import HasActiveTenant

from . import actions, simulator
from .errors import SessionError
from .events import without_linking_codes
from .models import SessionActivity, WhatsAppSession
from .qr import qr_svg
from .serializers import (
    PairingCodeSerializer,
    QrCodeSerializer,
    SessionActivitySerializer,
    SessionCreateSerializer,
    SessionSettingsSerializer,
    SessionStartSerializer,
    SimulatedInboundSerializer,
    SimulatedTypingSerializer,
    SimulatedScanSerializer,
    WhatsAppSessionSerializer,
)

S = WhatsAppSession.Status
ACTIVITY_DEFAULT_LIMIT, ACTIVITY_MAX_LIMIT = 50, 200
PAIR_CODE_WAIT_SECONDS, PAIR_CODE_POLL_SECONDS = 5.0, 0.25
TAGS = ["sessions"]


def _session(name):
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:
        raise exceptions.NotFound(f"No session named '{name}'.")
    return session


def _payload(session):
    return WhatsAppSessionSerializer(session).data


def _linking_for(request, data):
    """The codes that link a phone only for those who manage sessions (events.LINKING_FIELDS)."""
    if can(getattr(request._request, "membership", None), Perm.SESSIONS_MANAGE):
        return data
    return without_linking_codes(data)


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _tenant(request):
    return request._request.tenant


def _is_running(session):
    # The rule of actions.start_session: wanted running and not in a state that needs a new start.
    return session.should_run and session.status not in (S.ERROR, S.LOGGED_OUT, S.STOPPED)


class SessionApiView(APIView):
    required_permission = Perm.SESSIONS_MANAGE
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]


class SessionWriteView(SessionApiView):
    """POSTs here need a paying tenant (402 payment_required while read-only)."""

    permission_classes = [*SessionApiView.permission_classes, CanWrite]


NAME_PARAMETER = OpenApiParameter("name", {"type": "string", "pattern": actions.NAME_PATTERN}, OpenApiParameter.PATH,
                                  description="The session's name.")


class SessionListView(SessionWriteView):
    required_permissions = {"GET": Perm.SESSIONS_READ, "POST": Perm.SESSIONS_MANAGE}

    @extend_schema(
        tags=TAGS,
        parameters=[
            OpenApiParameter("status", str, enum=S.values, description="Only sessions in this status."),
            *PAGE_PARAMETERS,
        ],
        responses=WhatsAppSessionSerializer(many=True),
    )
    def get(self, request):
        """The tenant's sessions, oldest first."""
        sessions = WhatsAppSession.objects.all()
        wanted = choice_param(request, "status", S.values, SessionError.INVALID_STATUS)
        if wanted is not None:
            sessions = sessions.filter(status=wanted)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(sessions, request, view=self)
        rows = [_linking_for(request, row) for row in WhatsAppSessionSerializer(page, many=True).data]
        return paginator.get_paginated_response(rows)

    @extend_schema(tags=TAGS, request=SessionCreateSerializer, responses={201: WhatsAppSessionSerializer})
    def post(self, request):
        """Create a session (owner or admin), within the plan's session limit: 402 plan_limit_reached at the
        limit, 409 duplicate_name, 400 invalid_name."""
        serializer = SessionCreateSerializer(data=request.data)
        if not serializer.is_valid():
            if "name" in serializer.errors:
                raise DomainError(SessionError.INVALID_NAME, "Session names use 1–64 letters, digits, '-' or '_'.",
                                  serializer.errors)
            raise exceptions.ValidationError(serializer.errors)
        session = actions.create_session(_tenant(request), acting_user=request.user,
                                         name=serializer.validated_data["name"],
                                         label=serializer.validated_data["label"])
        return Response(_payload(session), status=status.HTTP_201_CREATED)


class SessionDetailView(SessionApiView):
    required_permissions = {"GET": Perm.SESSIONS_READ, "DELETE": Perm.SESSIONS_MANAGE,
                            "PATCH": Perm.SESSIONS_MANAGE}

    def get_permissions(self):
        extra = [CanWrite()] if self.request.method == "PATCH" else []
        return [*super().get_permissions(), *extra]

    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], responses=WhatsAppSessionSerializer)
    def get(self, request, name):
        """One session. The pairing code (and the QR code's expiry) only for roles that manage sessions."""
        return Response(_linking_for(request, _payload(_session(name))))

    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], request=SessionSettingsSerializer,
                   responses=WhatsAppSessionSerializer)
    def patch(self, request, name):
        """Change the session's settings: show_contact_typing (conversation pages show when contacts type; the
        number is marked online to everyone while connected)."""
        session = _session(name)
        data = _validated(SessionSettingsSerializer, request.data)
        session = actions.set_show_contact_typing(_tenant(request), session, on=data["show_contact_typing"],
                                                  acting_user=request.user)
        return Response(_payload(session))

    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], responses={204: None})
    def delete(self, request, name):
        """Delete the session and its activity (owner or admin); a linked, running one unlinks its phone first."""
        session = _session(name)
        actions.delete_session(_tenant(request), session, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionStartView(SessionWriteView):
    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], request=SessionStartSerializer,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """Start the session: a session host picks it up within seconds and shows a QR code (or, with
        use_pairing_code, a pairing code for `phone`). 409 already_running; 400 invalid_phone."""
        session = _session(name)
        data = _validated(SessionStartSerializer, request.data)
        use_pairing_code = data["use_pairing_code"]
        if use_pairing_code is None:
            use_pairing_code = settings.WHATSAPP_USE_PAIRING_CODE
        tenant = _tenant(request)
        if use_pairing_code:
            if _is_running(session):  # link_with_phone would switch a running session to a code instead
                raise DomainError(SessionError.ALREADY_RUNNING, "This session is already running.",
                                  {"status": session.status})
            session = actions.link_with_phone(tenant, session, acting_user=request.user, phone=data["phone"])
        else:
            session = actions.start_session(tenant, session, acting_user=request.user, by_qr=True)
        session.refresh_from_db()
        return Response(_payload(session), status=status.HTTP_202_ACCEPTED)


class SessionRestartView(SessionWriteView):
    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], request=None, responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """Restart the client where it runs (a linked session resumes without a scan); a stopped one starts."""
        session = actions.restart_session(_tenant(request), _session(name), acting_user=request.user)
        session.refresh_from_db()
        return Response(_payload(session), status=status.HTTP_202_ACCEPTED)


class SessionLogoutView(SessionApiView):
    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], request=None, responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """Unlink the phone (owner or admin). Relinking needs a new scan or pairing code."""
        session = _session(name)
        session = actions.logout_session(_tenant(request), session, acting_user=request.user)
        session.refresh_from_db()
        return Response(_payload(session), status=status.HTTP_202_ACCEPTED)


NO_QR_MESSAGES = {
    S.NEW: "This session is not started; start it to get a QR code.",
    S.STARTING: "The session is starting; the QR code follows in a moment.",
    S.PAIRING: "This session is linking with a pairing code, not a QR code.",
    S.CONNECTED: "This session is already linked and connected.",
    S.RECONNECTING: "This session is linked and reconnecting; it needs no QR code.",
}


class SessionQrView(SessionApiView):
    required_permission = Perm.SESSIONS_MANAGE  # the code links a phone: for those who link them

    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], responses={
        200: QrCodeSerializer,
        409: OpenApiResponse(description="no_qr: no QR code is waiting for a scan (details.status says why)."),
    })
    def get(self, request, name):
        """The QR code waiting for a scan. It rotates: fetch it again after expires_at."""
        session = _session(name)
        if session.status != S.QR or not session.qr_code:
            message = NO_QR_MESSAGES.get(session.status, "No QR code is waiting for a scan; start the session.")
            raise DomainError(SessionError.NO_QR,
                              message, {"status": session.status, "status_detail": session.status_detail})
        return Response({"qr": session.qr_code, "svg": qr_svg(session.qr_code), "expires_at": session.qr_expires_at})


def _pause(seconds):
    time.sleep(seconds)


def _wait_for_pair_code(session, previous_code, seconds):
    """The host reports the code a moment later (from another process): poll the row briefly for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.refresh_from_db()
        if session.pair_code and session.pair_code != previous_code:
            break
        if session.status in (S.ERROR, S.STOPPED, S.LOGGED_OUT, S.CONNECTED):
            break
        _pause(PAIR_CODE_POLL_SECONDS)
    session.refresh_from_db()
    return session


class SessionPairingCodeView(SessionWriteView):
    @extend_schema(tags=TAGS, parameters=[NAME_PARAMETER], request=PairingCodeSerializer,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """Link by phone number: WhatsApp issues an 8-character code to type on the phone (WhatsApp → Linked
        devices → Link with phone number). A stopped session is started. The code comes in pair_code, in this
        answer when it arrives within a few seconds, else in the session's payload (GET) and live page.
        400 invalid_phone; 409 already_linked."""
        session = _session(name)
        data = _validated(PairingCodeSerializer, request.data)
        previous_code = session.pair_code
        session = actions.link_with_phone(_tenant(request), session, acting_user=request.user, phone=data["phone"])
        session = _wait_for_pair_code(session, previous_code, PAIR_CODE_WAIT_SECONDS if data["wait"] else 0)
        return Response(_payload(session), status=status.HTTP_202_ACCEPTED)


class SessionActivityView(SessionApiView):
    required_permission = Perm.SESSIONS_READ

    @extend_schema(tags=TAGS, parameters=[
        NAME_PARAMETER,
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": ACTIVITY_MAX_LIMIT},
                         description=f"Default {ACTIVITY_DEFAULT_LIMIT}, at most {ACTIVITY_MAX_LIMIT}."),
    ], responses=SessionActivitySerializer(many=True))
    def get(self, request, name):
        """What happened to the session (QR issued, connected, disconnected, reconnecting, logged out, errors),
        newest first."""
        session = _session(name)
        limit = whole_number_param(request, "limit", low=1, high=ACTIVITY_MAX_LIMIT, default=ACTIVITY_DEFAULT_LIMIT,
                                   code=SessionError.INVALID_LIMIT)
        rows = SessionActivity.objects.filter(session=session).order_by("-created_at", "-id")[:limit]
        return Response(SessionActivitySerializer(rows, many=True).data)


# --- simulator test helpers ---------------------------------------------------------------------------------------


class SimulatorOnlySchema(AutoSchema):
    def is_excluded(self):
        return not simulator.active() or super().is_excluded()


SIMULATOR_TAGS = ["test helpers (simulator)"]


class SimulatorControlView(SessionApiView):
    """What WhatsApp's side does, on demand, for demos and tests (whatsapp.sessions.simulator). Mounted always,
    answered only while WHATSAPP_PROVIDER=simulator: with any other provider these URLs are 404 like unknown ones.
    The control runs on the host that runs the session: 409 session_not_running when none does."""

    schema = SimulatorOnlySchema()

    def initial(self, request, *args, **kwargs):
        if not simulator.active():
            raise exceptions.NotFound()
        super().initial(request, *args, **kwargs)

    def accepted(self, session):
        return Response(_payload(session), status=status.HTTP_202_ACCEPTED)


class SimulateScanView(SimulatorControlView):
    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], request=SimulatedScanSerializer,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """The phone scans the QR code (or enters the pairing code): the session links to `phone`."""
        session = _session(name)
        data = _validated(SimulatedScanSerializer, request.data)
        simulator.scan(session, phone=data["phone"], push_name=data["push_name"])
        return self.accepted(session)


def _inbound_message(data):
    """The simulated message from the validated body; 400 for what the simulator would refuse."""
    kind = data["type"]
    message = {"from_phone": normalize_phone(data["from"], code=SessionError.INVALID_PHONE), "text": data["text"],
               "type": kind}
    if kind == "text" and not data["text"].strip():
        raise DomainError(SessionError.MISSING_TEXT, "A text message needs a non-empty 'text'.")
    if kind == "location":
        if data.get("latitude") is None or data.get("longitude") is None:
            raise DomainError(SessionError.INVALID_LOCATION, "A location needs 'latitude' and 'longitude'.")
        message.update(latitude=data["latitude"], longitude=data["longitude"])
    elif kind != "text":
        try:
            media = base64.b64decode(data["media"], validate=True)
        except (binascii.Error, ValueError):
            media = b""
        if not media:
            raise DomainError(SessionError.MISSING_MEDIA, f"An inbound {kind} needs 'media': the file, base64-encoded.")
        # base64 text, not bytes: the command crosses the broker as JSON
        message.update(media=data["media"], mimetype=data["mimetype"], filename=data["filename"],
                       caption=data["caption"])
    return message


class SimulateInboundView(SimulatorControlView):
    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], request=SimulatedInboundSerializer,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """A contact sends the linked number a message: text (default), a media file (base64 `media`) or a
        location."""
        session = _session(name)
        simulator.inbound(session, **_inbound_message(_validated(SimulatedInboundSerializer, request.data)))
        return self.accepted(session)


class SimulateContactTypingView(SimulatorControlView):
    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], request=SimulatedTypingSerializer,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """A contact types (composing) or stops (paused) in their chat with the number; WhatsApp tells the
        number only while show_contact_typing marks it online."""
        session = _session(name)
        data = _validated(SimulatedTypingSerializer, request.data)
        simulator.contact_typing(session, from_phone=data["from"], state=data["state"])
        return self.accepted(session)


class SimulateDisconnectView(SimulatorControlView):
    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], request=None,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """The connection drops; the session reconnects by itself."""
        session = _session(name)
        simulator.disconnect(session)
        return self.accepted(session)


class SimulateLogoutView(SimulatorControlView):
    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], request=None,
                   responses={202: WhatsAppSessionSerializer})
    def post(self, request, name):
        """The device is removed under Linked devices on the phone: the session is logged out."""
        session = _session(name)
        simulator.logout(session)
        return self.accepted(session)


ChatPresenceSerializer = inline_serializer("SimulatedChatPresence", {
    "chat": serializers.CharField(), "state": serializers.ChoiceField(choices=["composing", "paused"]),
    "at": serializers.FloatField(help_text="Epoch seconds of the last state"),
    "typing": serializers.BooleanField(help_text="The phone shows typing… now"),
}, many=True)


class SimulatedChatPresenceView(SimulatorControlView):
    required_permission = Perm.SESSIONS_READ

    @extend_schema(tags=SIMULATOR_TAGS, parameters=[NAME_PARAMETER], responses=ChatPresenceSerializer)
    def get(self, request, name):
        """What the contacts' phones show of this number's typing (a member typing in a conversation)."""
        return Response(simulator.chat_presence(_session(name)))


# Included under /api/v1/ by config/urls.py.
urlpatterns = [
    path("sessions", SessionListView.as_view(), name="api_sessions"),
    path("sessions/<str:name>", SessionDetailView.as_view(), name="api_session"),
    path("sessions/<str:name>/start", SessionStartView.as_view(), name="api_session_start"),
    path("sessions/<str:name>/restart", SessionRestartView.as_view(), name="api_session_restart"),
    path("sessions/<str:name>/logout", SessionLogoutView.as_view(), name="api_session_logout"),
    path("sessions/<str:name>/qr", SessionQrView.as_view(), name="api_session_qr"),
    path("sessions/<str:name>/pairing-code", SessionPairingCodeView.as_view(), name="api_session_pairing_code"),
    path("sessions/<str:name>/activity", SessionActivityView.as_view(), name="api_session_activity"),
    path("test-helpers/sessions/<str:name>/scan", SimulateScanView.as_view(), name="api_simulate_scan"),
    path("test-helpers/sessions/<str:name>/inbound", SimulateInboundView.as_view(), name="api_simulate_inbound"),
    path("test-helpers/sessions/<str:name>/contact-typing", SimulateContactTypingView.as_view(),
         name="api_simulate_contact_typing"),
    path("test-helpers/sessions/<str:name>/disconnect", SimulateDisconnectView.as_view(),
         name="api_simulate_disconnect"),
    path("test-helpers/sessions/<str:name>/logout", SimulateLogoutView.as_view(), name="api_simulate_logout"),
    path("test-helpers/sessions/<str:name>/chat-presence", SimulatedChatPresenceView.as_view(),
         name="api_simulated_chat_presence"),
]
