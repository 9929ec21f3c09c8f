"""How people are told: email templates and rendering, the SMTP port and adapter, and the dev mailbox.

Imports models only; the service layer builds an SmtpConfig from Settings and owns the sent-message records.
"""

from notifications.mailbox import (
    DevMailbox,
    MailboxEntry,
    MailboxMessage,
    MaildirSink,
    SinkServer,
    parse_links,
    serve_sink,
    serve_smtp,
    start_sink,
)
from notifications.message import OutgoingEmail, build_message, message_id_for, serialize_message
from notifications.rendering import RenderedEmail, render_email
from notifications.sending import DeliveryResult, EmailSender
from notifications.smtp import SmtpConfig, SmtpSender

__all__ = [
    "DeliveryResult",
    "DevMailbox",
    "EmailSender",
    "MailboxEntry",
    "MailboxMessage",
    "MaildirSink",
    "OutgoingEmail",
    "RenderedEmail",
    "SinkServer",
    "SmtpConfig",
    "SmtpSender",
    "build_message",
    "message_id_for",
    "parse_links",
    "render_email",
    "serialize_message",
    "serve_sink",
    "serve_smtp",
    "start_sink",
]
