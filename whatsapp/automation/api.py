"""The receptionist over the API (included under /api/v1/ by config/urls.py):

GET/PATCH automation (the workspace's settings), GET/PATCH/DELETE sessions/{name}/automation (a number's own,
DELETE: back to the workspace's), POST automation/bot-secret, GET/POST automation/rules,
GET/PATCH/DELETE automation/rules/{id}, GET automation/log, POST sessions/{name}/handoff and
POST conversations/{id}/handoff.

Who may do what is core.permissions' table: settings.read to read, settings.manage to change settings and rules,
conversations.reply to switch a handoff (a person takes the conversation); 403 permission_denied otherwise. Writes need a paying tenant (402). Ids and names are the tenant's own:
another tenant's are 404.
"""
from django.db.models import Q
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, StrictSerializer, choice_param, field_with_schema, paginated
from core.errors import CommonError, DomainError
from core.net import HTTP_URL_PATTERN
from core.telegram import CHAT_ID_RE as TELEGRAM_CHAT
from core.permissions import Perm
from tenants.permissions import HasActiveTenant
from whatsapp.conversations.models import Conversation
from whatsapp.sessions.models import WhatsAppSession

from . import actions, selectors
from . import schedule as hours
from .models import AutomationLog, KeywordRule

TAGS = ["automation"]
TIME = {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"}


class IntervalSerializer(StrictSerializer):
    day = serializers.ChoiceField(choices=hours.DAYS)
    start = field_with_schema(serializers.CharField, TIME, help_text="HH:MM, local time")
    end = field_with_schema(serializers.CharField, TIME, help_text="HH:MM, local time; 24:00 = midnight")


_TEXT = {"max_length": actions.MAX_TEXT, "allow_blank": True, "required": False, "trim_whitespace": False}


class SettingsWriteSerializer(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    time_zone = field_with_schema(serializers.CharField, {"type": "string", "maxLength": 64},
                                  max_length=64, allow_blank=True, required=False,
                                  help_text="IANA name; empty = the workspace's time zone")
    schedule = IntervalSerializer(many=True, required=False, max_length=hours.MAX_INTERVALS,
                                  help_text="Opening intervals; none = open around the clock")
    holidays = serializers.ListField(child=serializers.DateField(), required=False,
                                     max_length=hours.MAX_HOLIDAYS, help_text="Closed all day")
    away_message = serializers.CharField(**_TEXT)
    greeting = serializers.CharField(**_TEXT)
    fallback = serializers.CharField(**_TEXT)
    cooldown_minutes = serializers.IntegerField(min_value=0, max_value=actions.MAX_COOLDOWN_MINUTES, required=False)
    handoff_keywords = serializers.ListField(child=serializers.CharField(min_length=1, max_length=60),
                                             max_length=actions.MAX_KEYWORDS, required=False)
    handoff_reply = serializers.CharField(**_TEXT)
    handoff_minutes = serializers.IntegerField(min_value=0, max_value=actions.MAX_HANDOFF_MINUTES, required=False)
    bot_url = field_with_schema(serializers.CharField, {"type": "string", "maxLength": 2000,
                                                        "pattern": f"^$|{HTTP_URL_PATTERN}"},
                                max_length=2000, allow_blank=True, required=False,
                                help_text="Where inbound messages are POSTed (signed); empty = no bot")
    bot_enabled = serializers.BooleanField(required=False)
    escalation_member_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2_147_483_647), required=False,
        max_length=actions.MAX_ESCALATION_CONTACTS,
        help_text="Members (GET /members) emailed when a contact asks for a person")
    escalation_emails = serializers.ListField(child=serializers.EmailField(max_length=254), required=False,
                                              max_length=actions.MAX_ESCALATION_CONTACTS,
                                              help_text="Other addresses emailed then")
    escalation_telegram_chat_ids = serializers.ListField(
        child=field_with_schema(serializers.CharField, {"type": "string", "pattern": TELEGRAM_CHAT.pattern},
                                max_length=33),
        required=False, max_length=actions.MAX_ESCALATION_CONTACTS,
        help_text="Telegram chats the platform's bot tells then (numeric ids, or @channel)")


SettingsSerializer = inline_serializer("AutomationSettings", {
    "scope": serializers.ChoiceField(choices=["workspace", "session"]),
    "session": serializers.CharField(allow_null=True),
    "own": serializers.BooleanField(help_text="false: a number using the workspace's settings (or defaults)"),
    "enabled": serializers.BooleanField(),
    "time_zone": serializers.CharField(), "effective_time_zone": serializers.CharField(),
    "open_now": serializers.BooleanField(),
    "schedule": IntervalSerializer(many=True), "holidays": serializers.ListField(child=serializers.DateField()),
    "away_message": serializers.CharField(), "greeting": serializers.CharField(), "fallback": serializers.CharField(),
    "cooldown_minutes": serializers.IntegerField(),
    "handoff_keywords": serializers.ListField(child=serializers.CharField()),
    "handoff_reply": serializers.CharField(), "handoff_minutes": serializers.IntegerField(),
    "bot_url": serializers.CharField(), "bot_enabled": serializers.BooleanField(),
    "bot_secret_set": serializers.BooleanField(),
    "escalation_member_ids": serializers.ListField(child=serializers.IntegerField()),
    "escalation_emails": serializers.ListField(child=serializers.EmailField()),
    "escalation_telegram_chat_ids": serializers.ListField(child=serializers.CharField()),
    "bot_last_error": serializers.CharField(allow_null=True),
    "bot_last_error_at": serializers.DateTimeField(allow_null=True),
    "bot_last_ok_at": serializers.DateTimeField(allow_null=True),
    "updated_at": serializers.DateTimeField(allow_null=True),
})


class RuleWriteSerializer(StrictSerializer):
    session = field_with_schema(serializers.CharField, {"type": "string", "nullable": True,
                                                        "pattern": r"^[a-zA-Z0-9_-]{1,64}$"},
                                allow_null=True, required=False, max_length=64,
                                help_text="The number it answers for; null = every number")
    name = serializers.CharField(min_length=1, max_length=120)
    match = serializers.ChoiceField(choices=KeywordRule.Match.values, required=False)
    pattern = serializers.CharField(min_length=1, max_length=500, trim_whitespace=False)
    priority = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False,
                                        help_text="Lower first (default 100)")
    action = serializers.ChoiceField(choices=KeywordRule.Action.choices, required=False)
    reply_type = serializers.ChoiceField(choices=KeywordRule.ReplyType.values, required=False)
    reply_text = serializers.CharField(**_TEXT)
    media_url = field_with_schema(serializers.CharField, {"type": "string", "maxLength": 2000,
                                                          "pattern": f"^$|{HTTP_URL_PATTERN}"},
                                  max_length=2000, allow_blank=True, required=False)
    cooldown_minutes = serializers.IntegerField(min_value=0, max_value=actions.MAX_COOLDOWN_MINUTES, required=False)
    in_groups = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


RuleSerializer = inline_serializer("KeywordRule", {
    "id": serializers.IntegerField(), "session": serializers.CharField(allow_null=True),
    "name": serializers.CharField(), "match": serializers.ChoiceField(choices=KeywordRule.Match.values),
    "pattern": serializers.CharField(), "priority": serializers.IntegerField(),
    "action": serializers.ChoiceField(choices=KeywordRule.Action.choices),
    "reply_type": serializers.ChoiceField(choices=KeywordRule.ReplyType.values),
    "reply_text": serializers.CharField(), "media_url": serializers.CharField(),
    "cooldown_minutes": serializers.IntegerField(), "in_groups": serializers.BooleanField(),
    "enabled": serializers.BooleanField(), "created_at": serializers.DateTimeField(),
    "updated_at": serializers.DateTimeField(),
})
LogSerializer = inline_serializer("AutomationLogEntry", {
    "id": serializers.IntegerField(), "session": serializers.CharField(), "chat": serializers.CharField(),
    "conversation_id": serializers.IntegerField(allow_null=True),
    "kind": serializers.ChoiceField(choices=AutomationLog.Kind.values),
    "rule_id": serializers.IntegerField(allow_null=True), "source": serializers.CharField(),
    "detail": serializers.CharField(), "inbound_message_id": serializers.IntegerField(allow_null=True),
    "reply_message_id": serializers.IntegerField(allow_null=True, help_text="The automatic message it queued"),
    "reply_status": serializers.CharField(allow_null=True), "created_at": serializers.DateTimeField(),
})


class HandoffWriteSerializer(StrictSerializer):
    on = serializers.BooleanField()
    minutes = serializers.IntegerField(min_value=1, max_value=actions.MAX_HANDOFF_MINUTES, required=False,
                                       help_text="How long automation stays silent (default: the settings')")


HandoffSerializer = inline_serializer("Handoff", {
    "session": serializers.CharField(), "conversation_id": serializers.IntegerField(allow_null=True),
    "on": serializers.BooleanField(), "until": serializers.DateTimeField(allow_null=True),
    "requested": serializers.BooleanField(help_text="The contact asked for a person"),
})
BotSecretSerializer = inline_serializer("BotSecret", {
    "secret": serializers.CharField(help_text="whsec_… signing secret of the bot webhook. Shown once.")})


def _valid(serializer_class, request, *, partial=False):
    serializer = serializer_class(data=request.data, partial=partial)
    if not serializer.is_valid():
        raise DomainError(CommonError.VALIDATION_ERROR, "Invalid request.", serializer.errors)
    return dict(serializer.validated_data)


def _session(name):
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:
        raise exceptions.NotFound(f"No session named '{name}'.")
    return session


def _settings_changes(request):
    data = _valid(SettingsWriteSerializer, request, partial=True)
    if "schedule" in data:
        data["schedule"] = [dict(interval) for interval in data["schedule"]]
    if "holidays" in data:
        data["holidays"] = [day.isoformat() for day in data["holidays"]]
    return data


class AutomationView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]


NAME = [OpenApiParameter("name", str, OpenApiParameter.PATH)]


class WorkspaceSettingsView(AutomationView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PATCH": Perm.SETTINGS_MANAGE}

    @extend_schema(tags=TAGS, responses=SettingsSerializer)
    def get(self, request):
        """The workspace's receptionist: business hours, automatic answers, handoff, the bot webhook."""
        return Response(selectors.settings_payload(actions.settings_row(None)))

    @extend_schema(tags=TAGS, request=SettingsWriteSerializer, responses=SettingsSerializer)
    def patch(self, request):
        """Change the workspace's receptionist (owner or admin); fields left out keep their value."""
        row = actions.update_settings(request._request.tenant, acting_user=request.user,
                                      changes=_settings_changes(request))
        return Response(selectors.settings_payload(row))


class SessionSettingsView(AutomationView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PATCH": Perm.SETTINGS_MANAGE,
                            "DELETE": Perm.SETTINGS_MANAGE}

    @extend_schema(tags=TAGS, parameters=NAME, responses=SettingsSerializer)
    def get(self, request, name):
        """The number's receptionist: its own, or the workspace's it uses (own: false)."""
        session = _session(name)
        return Response(selectors.settings_payload(selectors.effective_row(session), session=session))

    @extend_schema(tags=TAGS, parameters=NAME, request=SettingsWriteSerializer, responses=SettingsSerializer)
    def patch(self, request, name):
        """Give the number settings of its own (made from the workspace's defaults on the first change)."""
        session = _session(name)
        row = actions.update_settings(request._request.tenant, session=session, acting_user=request.user,
                                      changes=_settings_changes(request))
        return Response(selectors.settings_payload(row, session=session))

    @extend_schema(tags=TAGS, parameters=NAME, responses={204: None})
    def delete(self, request, name):
        """The number goes back to the workspace's settings."""
        session = _session(name)
        actions.reset_session_settings(request._request.tenant, session, acting_user=request.user)
        return Response(status=204)


class BotSecretView(AutomationView):
    required_permission = Perm.SETTINGS_MANAGE

    @extend_schema(tags=TAGS, request=None, parameters=[
        OpenApiParameter("session", {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"},
                         description="The number's own settings; absent = the workspace's")],
        responses={201: BotSecretSerializer})
    def post(self, request):
        """A new signing secret for the bot webhook (owner or admin); the previous one stops working."""
        name = request.query_params.get("session")
        session = _session(name) if name is not None else None
        _, secret = actions.rotate_bot_secret(request._request.tenant, session=session, acting_user=request.user)
        return Response({"secret": secret}, status=201)


class RuleListView(AutomationView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "POST": Perm.SETTINGS_MANAGE}

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("session", {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"},
                         description="Rules of this number and those of every number"),
        *PAGE_PARAMETERS], responses=serializers.ListSerializer(child=RuleSerializer))
    def get(self, request):
        """Keyword rules, in the order they are tried (priority, then age)."""
        rules = KeywordRule.objects.select_related("session").order_by("priority", "id")
        name = request.query_params.get("session")
        if name is not None:
            rules = rules.filter(Q(session__isnull=True) | Q(session=_session(name)))
        return paginated(request, self, rules, selectors.rule_payload)

    @extend_schema(tags=TAGS, request=RuleWriteSerializer, responses={201: RuleSerializer})
    def post(self, request):
        """Add a keyword rule (owner or admin). 400 invalid_pattern (a regex that does not compile), invalid_rule
        (a reply without its text or media), too_many_rules."""
        data = _valid(RuleWriteSerializer, request)
        if data.get("session") is not None:
            data["session"] = _session(data["session"])
        rule = actions.create_rule(request._request.tenant, acting_user=request.user, fields=data)
        return Response(selectors.rule_payload(rule), status=201)


class RuleDetailView(AutomationView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PATCH": Perm.SETTINGS_MANAGE,
                            "DELETE": Perm.SETTINGS_MANAGE}

    def _rule(self, pk):
        rule = KeywordRule.objects.select_related("session").filter(pk=pk).first()
        if rule is None:
            raise exceptions.NotFound("No such rule.")
        return rule

    @extend_schema(tags=TAGS, responses=RuleSerializer)
    def get(self, request, pk):
        return Response(selectors.rule_payload(self._rule(pk)))

    @extend_schema(tags=TAGS, request=RuleWriteSerializer, responses=RuleSerializer)
    def patch(self, request, pk):
        """Change a rule (owner or admin); fields left out keep their value."""
        rule = self._rule(pk)
        if not request.data:
            raise DomainError(CommonError.VALIDATION_ERROR, "Send a JSON object with the fields to change.")
        data = _valid(RuleWriteSerializer, request, partial=True)
        if "session" in data:
            data["session"] = _session(data["session"]) if data["session"] is not None else None
        rule = actions.update_rule(request._request.tenant, rule, acting_user=request.user, changes=data)
        return Response(selectors.rule_payload(rule))

    @extend_schema(tags=TAGS, responses={204: None})
    def delete(self, request, pk):
        rule = self._rule(pk)
        actions.delete_rule(request._request.tenant, rule, acting_user=request.user)
        return Response(status=204)


class LogView(AutomationView):
    required_permission = Perm.SETTINGS_READ

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("session", {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"}),
        OpenApiParameter("kind", str, enum=AutomationLog.Kind.values), *PAGE_PARAMETERS],
        responses=serializers.ListSerializer(child=LogSerializer))
    def get(self, request):
        """What automation did, newest first: each answer with the rule or bot that sent it, and what it declined
        (cooldowns, the hourly cap, handoffs, failures)."""
        rows = AutomationLog.objects.select_related("session", "reply")
        name = request.query_params.get("session")
        if name is not None:
            rows = rows.filter(session=_session(name))
        kind = choice_param(request, "kind", AutomationLog.Kind.values, CommonError.VALIDATION_ERROR)
        if kind is not None:
            rows = rows.filter(kind=kind)
        return paginated(request, self, rows, selectors.log_payload)


class SessionHandoffView(AutomationView):
    required_permission = Perm.CONVERSATIONS_REPLY

    @extend_schema(tags=TAGS, parameters=NAME, request=HandoffWriteSerializer, responses=HandoffSerializer)
    def post(self, request, name):
        """Switch automation off for the whole number while people answer (on), or back on (off)."""
        session = _session(name)
        data = _valid(HandoffWriteSerializer, request)
        row = actions.set_handoff(request._request.tenant, session, on=data["on"], minutes=data.get("minutes"),
                                  acting_user=request.user, reason="manual")
        return Response(selectors.handoff_payload(row, session=session))


class ConversationHandoffView(AutomationView):
    required_permission = Perm.CONVERSATIONS_REPLY

    @extend_schema(tags=TAGS, request=HandoffWriteSerializer, responses=HandoffSerializer)
    def post(self, request, pk):
        """A person takes the conversation (on: automation stays silent there for `minutes`), or gives it back."""
        conversation = Conversation.objects.select_related("session").filter(pk=pk).first()
        if conversation is None:
            raise exceptions.NotFound("No such conversation.")
        data = _valid(HandoffWriteSerializer, request)
        row = actions.set_handoff(request._request.tenant, conversation.session, conversation=conversation,
                                  on=data["on"], minutes=data.get("minutes"), acting_user=request.user,
                                  reason="manual")
        return Response(selectors.handoff_payload(row, session=conversation.session, conversation=conversation))


urlpatterns = [
    path("automation", WorkspaceSettingsView.as_view(), name="api_automation"),
    path("automation/bot-secret", BotSecretView.as_view(), name="api_automation_bot_secret"),
    path("automation/rules", RuleListView.as_view(), name="api_automation_rules"),
    path("automation/rules/<int:pk>", RuleDetailView.as_view(), name="api_automation_rule"),
    path("automation/log", LogView.as_view(), name="api_automation_log"),
    path("sessions/<str:name>/automation", SessionSettingsView.as_view(), name="api_session_automation"),
    path("sessions/<str:name>/handoff", SessionHandoffView.as_view(), name="api_session_handoff"),
    path("conversations/<int:pk>/handoff", ConversationHandoffView.as_view(), name="api_conversation_handoff"),
]
