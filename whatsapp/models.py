"""Django loads an app's models from <app>.models: the whatsapp app's models live in its feature packages.
Code inside whatsapp/ imports them from their feature; this module is the app's face (and the admin's, the shell's)."""
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
from whatsapp.messaging.models import BlockedNumber, Message, PacingPolicy
from whatsapp.sessions.models import SessionActivity, WhatsAppSession
from whatsapp.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = ["AudienceContact", "BlockedNumber", "BroadcastSettings", "Campaign", "CampaignRecipient", "CampaignSender",
           "MessageTemplate", "OptOut", "Contact", "Conversation", "Group", "Message", "PacingPolicy", "SessionActivity",
           "WebhookDelivery", "WebhookEndpoint", "WhatsAppSession"]
