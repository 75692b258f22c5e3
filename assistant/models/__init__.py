"""The assistant app's models: website conversations (chat.py) and the email desk (desk.py)."""

from assistant.models.chat import Conversation, Feedback, Message, PinnedAnswer, Site
from assistant.models.desk import Attachment, InboundMail, MailMessage, Ticket

__all__ = [
    "Attachment",
    "Conversation",
    "Feedback",
    "InboundMail",
    "MailMessage",
    "Message",
    "PinnedAnswer",
    "Site",
    "Ticket",
]
