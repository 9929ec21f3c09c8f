"""What the data is: SQLModel tables, pydantic schemas and enums. No I/O here.

Importing this package registers every table on SQLModel.metadata (Alembic and the tests rely on it).
"""

from models.audit import AuditChainHead, AuditEvent
from models.documents import Document, DocumentVersion, Section
from models.extensions import ExtensionRequest
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.responses import AnswerText, CommentResponse
from models.reviews import AccessLink, Comment, LinkToken, SignOff, SignOffCode
from models.rounds import ReviewTask, Round, TaskReminder
from models.throttle import ThrottleCount
from models.users import Credential, SignInFailure, User

__all__ = [
    "AccessLink",
    "AnswerText",
    "AuditChainHead",
    "AuditEvent",
    "Comment",
    "CommentResponse",
    "Credential",
    "Document",
    "DocumentVersion",
    "ExtensionRequest",
    "LinkToken",
    "Organisation",
    "OutboxMessage",
    "ReviewTask",
    "Round",
    "Section",
    "SignInFailure",
    "SignOff",
    "SignOffCode",
    "TaskReminder",
    "ThrottleCount",
    "User",
]
