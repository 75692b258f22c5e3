"""The assistant app's models: website conversations (chat.py) and the email desk (desk.py)."""

from answers.models import PinnedAnswer  # moved to answers/ (the answer path owns it)
from assistant.models.chat import AgentPresence, Conversation, Feedback, Message, Site
from assistant.models.desk import (
    Attachment,
    Draft,
    InboundMail,
    Mailbox,
    MailMessage,
    OutboundMail,
    Ticket,
    TicketEvent,
    TriageLabel,
)
from assistant.models.drift import DriftReport, QuestionSample
from assistant.models.macros import Macro
from assistant.models.training import TrainingExample

__all__ = [
    "AgentPresence",
    "Attachment",
    "Draft",
    "Conversation",
    "DriftReport",
    "Feedback",
    "InboundMail",
    "Macro",
    "Mailbox",
    "MailMessage",
    "Message",
    "OutboundMail",
    "PinnedAnswer",
    "QuestionSample",
    "Site",
    "Ticket",
    "TicketEvent",
    "TrainingExample",
    "TriageLabel",
]
