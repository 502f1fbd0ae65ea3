"""Django loads an app's models from <app>.models: the whatsapp app's models live in its feature packages.
Code inside whatsapp/ imports them from their feature; this module is the app's face (and the admin's, the shell's)."""
from whatsapp.automation.models import AutomationLog, Handoff, KeywordRule, Receptionist
from whatsapp.campaigns.models import (
    AudienceContact,
    BroadcastSettings,
    Campaign,
    CampaignRecipient,
    CampaignSender,
    MessageTemplate,
    OptOut,
)
from whatsapp.conversations.models import Contact, Conversation, Group
from whatsapp.inbox.models import CannedReply, ConversationNote, RoundRobin
from whatsapp.messaging.models import BlockedNumber, Message, PacingPolicy
from whatsapp.sessions.models import SessionActivity, WhatsAppSession
from whatsapp.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = ["AudienceContact", "AutomationLog", "BlockedNumber", "BroadcastSettings", "CannedReply", "Campaign",
           "CampaignRecipient", "CampaignSender", "Contact", "Conversation", "ConversationNote", "Group", "Handoff",
           "KeywordRule", "Message", "MessageTemplate", "OptOut", "PacingPolicy", "Receptionist", "RoundRobin",
           "SessionActivity", "WebhookDelivery", "WebhookEndpoint", "WhatsAppSession"]
