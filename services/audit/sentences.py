"""The audit trail as sentences a person reads: who did what to which organisation in which round.

Each event becomes a few parts, each an English text with `%(name)s` placeholders and the values that fill
them ("Ministry of Finance (ana@finance.gov.al)" + "signed off round #3 “Migration strategy”: approve
with comments."). The page translates each part's text, and the values named in `words` (a decision, a
role: the vocabulary), and fills the placeholders in, escaped. An event of a kind this module does not
know reads as a generic sentence with its action, its round and its organisation. The event itself, as
recorded, stays beside the sentence for auditors.

The names come from the database as it is now (an organisation renamed since reads under its new name);
the event's own data never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import AuditEventRead
from models.documents import Document
from models.enums import ActorKind
from models.organisations import Organisation
from models.reviews import AccessLink
from models.rounds import ReviewTask, Round
from models.users import User
from services.audit import browse


def N_(text: str) -> str:
    """Marks a text for the catalogs (babel.cfg reads this module); it is translated where it is shown."""
    return text


@dataclass(frozen=True)
class Part:
    """A piece of a sentence: an English text with %(name)s placeholders, the values, and which values are
    words of the vocabulary (translated too)."""

    text: str
    params: dict[str, str] = field(default_factory=dict)
    words: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DescribedEvent:
    event: AuditEventRead
    at: datetime
    parts: list[Part]


@dataclass(frozen=True)
class DescribedPage:
    events: list[DescribedEvent]
    next_after_seq: int | None


@dataclass
class _Names:
    timezone: str
    organisations: dict[str, str] = field(default_factory=dict)
    task_organisations: dict[int, str] = field(default_factory=dict)
    rounds: dict[int, str] = field(default_factory=dict)
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    documents: dict[int, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


async def described_events(
    session: AsyncSession, *, timezone: str, round_id: int | None = None, after_seq: int = 0, limit: int = 100
) -> DescribedPage:
    """A page of the trail (browse.list_events) with each event as a sentence."""
    page = await browse.list_events(session, round_id=round_id, after_seq=after_seq, limit=limit)
    names = await _names(session, page.events, timezone)
    return DescribedPage(
        events=[
            DescribedEvent(
                event=event,
                at=datetime.fromisoformat(event.at.replace("Z", "+00:00")),
                parts=describe(event, names),
            )
            for event in page.events
        ],
        next_after_seq=page.next_after_seq,
    )


async def _names(session: AsyncSession, events: list[AuditEventRead], timezone: str) -> _Names:
    names = _Names(timezone=timezone)
    keys: set[str] = set()
    task_ids: set[int] = set()
    round_ids: set[int] = set()
    user_ids: set[int] = set()
    document_ids: set[int] = set()
    link_ids: set[str] = set()
    for event in events:
        data = event.data
        for name in ("organisation", "key"):
            if isinstance(data.get(name), str):
                keys.add(data[name])
        if isinstance(data.get("organisations"), dict):
            keys.update(str(key) for key in data["organisations"])
        if event.task_id is not None:
            task_ids.add(event.task_id)
        if event.round_id is not None:
            round_ids.add(event.round_id)
        if event.actor.kind == ActorKind.user and event.actor.id.isdigit():
            user_ids.add(int(event.actor.id))
        if isinstance(data.get("user_id"), int):
            user_ids.add(data["user_id"])
        if isinstance(data.get("document_id"), int):
            document_ids.add(data["document_id"])
        if isinstance(data.get("link_id"), str):
            link_ids.add(data["link_id"])
    if task_ids:
        rows = await session.exec(
            select(ReviewTask.id, Organisation.key)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(col(ReviewTask.id).in_(task_ids))
        )
        names.task_organisations = {task_id or 0: key for task_id, key in rows.all()}
        keys.update(names.task_organisations.values())
    if keys:
        rows_ = await session.exec(
            select(Organisation.key, Organisation.name_en).where(col(Organisation.key).in_(keys))
        )
        names.organisations = dict(rows_.all())
    if round_ids:
        names.rounds = {
            round_id or 0: title
            for round_id, title in (
                await session.exec(select(Round.id, Round.title).where(col(Round.id).in_(round_ids)))
            ).all()
        }
    if user_ids:
        names.users = {
            str(user_id): (email, str(role))
            for user_id, email, role in (
                await session.exec(select(User.id, User.email, User.role).where(col(User.id).in_(user_ids)))
            ).all()
        }
    if document_ids:
        names.documents = {
            document_id or 0: title
            for document_id, title in (
                await session.exec(
                    select(Document.id, Document.title).where(col(Document.id).in_(document_ids))
                )
            ).all()
        }
    if link_ids:
        names.links = dict(
            (
                await session.exec(
                    select(AccessLink.id, AccessLink.email).where(col(AccessLink.id).in_(link_ids))
                )
            ).all()
        )
    return names


# --------------------------------------------------------------------------------------- the words

ROLE_ACTORS = {
    "coordinator": N_("Coordinator %(email)s"),
    "auditor": N_("Auditor %(email)s"),
    "admin": N_("Admin %(email)s"),
}
SYSTEM_ACTORS = {
    "scheduler": N_("The scheduler"),
    "lost-link-page": N_("The lost-link page"),
}


def _actor(event: AuditEventRead, names: _Names) -> Part:
    actor = event.actor
    if actor.kind == ActorKind.user:
        email, role = names.users.get(actor.id, (actor.email or f"#{actor.id}", ""))
        return Part(ROLE_ACTORS.get(role, N_("User %(email)s")), {"email": actor.email or email})
    if actor.kind == ActorKind.link:
        organisation = _organisation_of(event, names)
        if organisation:
            return Part(
                N_("%(organisation)s (%(email)s)"), {"organisation": organisation, "email": actor.email or ""}
            )
        return Part(N_("%(email)s (through a review link)"), {"email": actor.email or actor.id})
    if actor.id in SYSTEM_ACTORS:
        return Part(SYSTEM_ACTORS[actor.id])
    return Part(N_("The system (%(id)s)"), {"id": actor.id})


def _organisation_of(event: AuditEventRead, names: _Names) -> str:
    key = event.data.get("organisation") or event.data.get("key")
    if not isinstance(key, str) and event.task_id is not None:
        key = names.task_organisations.get(event.task_id)
    if not isinstance(key, str):
        return ""
    return names.organisations.get(key, key)


def _round(event: AuditEventRead, names: _Names) -> str:
    if event.round_id is None:
        return ""
    title = names.rounds.get(event.round_id) or event.data.get("title")
    return f"#{event.round_id} “{title}”" if title else f"#{event.round_id}"


def _when(value: Any, names: _Names) -> str:
    """An ISO time of the event's data in the console's time zone, as 2026-03-02 17:00."""
    if not isinstance(value, str):
        return "?"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(ZoneInfo(names.timezone)).strftime("%Y-%m-%d %H:%M")


def _text(value: Any, limit: int = 200) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(value: Any) -> str:
    if isinstance(value, list | dict):
        return str(len(value))
    return str(value) if isinstance(value, int) else "?"


# ------------------------------------------------------------------------------------ the sentences

Describer = Callable[[AuditEventRead, _Names], list[Part]]


def _imported(event: AuditEventRead, names: _Names) -> list[Part]:
    data = event.data
    parts = [
        Part(
            N_("imported the registry: %(created)s created, %(updated)s updated, %(unchanged)s unchanged."),
            {
                "created": _count(data.get("created")),
                "updated": _count(data.get("updated")),
                "unchanged": _count(data.get("unchanged")),
            },
        )
    ]
    if data.get("ignored_columns"):
        parts.append(
            Part(
                N_("Ignored columns: %(columns)s."), {"columns": ", ".join(map(str, data["ignored_columns"]))}
            )
        )
    open_tasks = data.get("open_tasks")
    if isinstance(open_tasks, dict) and open_tasks.get("contacts"):
        count = _count(open_tasks["contacts"])
        if open_tasks.get("changed"):
            parts.append(Part(N_("Contacts of open tasks changed with it: %(count)s."), {"count": count}))
        else:
            parts.append(Part(N_("Contacts of open tasks left as they were: %(count)s."), {"count": count}))
    return parts


def _changes(changes: Any) -> str:
    if not isinstance(changes, dict):
        return "?"
    return "; ".join(
        f"{name}: {_text(change.get('old'), 80) or '—'} → {_text(change.get('new'), 80) or '—'}"
        for name, change in changes.items()
        if isinstance(change, dict)
    )


def _organisation_updated(event: AuditEventRead, names: _Names) -> list[Part]:
    parts = [
        Part(
            N_("changed %(organisation)s in the registry: %(changes)s."),
            {"organisation": _organisation_of(event, names), "changes": _changes(event.data.get("changes"))},
        )
    ]
    open_tasks = event.data.get("open_tasks")
    if isinstance(open_tasks, dict) and open_tasks.get("contacts"):
        count = _count(open_tasks["contacts"])
        if open_tasks.get("changed"):
            parts.append(Part(N_("Contacts of open tasks changed with it: %(count)s."), {"count": count}))
        else:
            parts.append(Part(N_("Contacts of open tasks left as they were: %(count)s."), {"count": count}))
    return parts


def _simple(text: str, *fields: str, words: Iterable[str] = ()) -> Describer:
    """A sentence whose placeholders are the organisation, the round, and fields of the data as they are."""
    chosen = frozenset(words)

    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        params = {"organisation": _organisation_of(event, names), "round": _round(event, names)}
        params |= {name: _text(event.data.get(name)) for name in fields}
        return [Part(text, params, chosen)]

    return describe


def _document(text: str) -> Describer:
    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        data = event.data
        document_id = data.get("document_id")
        title = names.documents.get(document_id) if isinstance(document_id, int) else None
        return [
            Part(
                text,
                {
                    "title": title or _text(data.get("filename")),
                    "filename": _text(data.get("filename")),
                    "version": _text(data.get("version")),
                    "sections": _count(data.get("sections")),
                },
            )
        ]

    return describe


def _round_created(event: AuditEventRead, names: _Names) -> list[Part]:
    return [
        Part(
            N_("created round %(round)s with %(count)s organisations, deadline %(deadline)s."),
            {
                "round": _round(event, names),
                "count": _count(event.data.get("organisations")),
                "deadline": _when(event.data.get("deadline"), names),
            },
        )
    ]


def _round_updated(event: AuditEventRead, names: _Names) -> list[Part]:
    changed = event.data.get("changed")
    fields = ", ".join(map(str, changed)) if isinstance(changed, list) else "?"
    return [
        Part(N_("changed round %(round)s: %(fields)s."), {"round": _round(event, names), "fields": fields})
    ]


def _round_launched(event: AuditEventRead, names: _Names) -> list[Part]:
    return [
        Part(
            N_("launched round %(round)s: %(count)s organisations invited, deadline %(deadline)s."),
            {
                "round": _round(event, names),
                "count": _count(event.data.get("organisations")),
                "deadline": _when(event.data.get("deadline"), names),
            },
        )
    ]


def _round_closed(event: AuditEventRead, names: _Names) -> list[Part]:
    reason = str(event.data.get("reason") or "")
    text = {
        "all_signed_off": N_("closed round %(round)s: every organisation has settled its task."),
        "deadline": N_("closed round %(round)s at its deadline."),
        "coordinator": N_("closed round %(round)s early."),
    }.get(reason, N_("closed round %(round)s."))
    parts = [Part(text, {"round": _round(event, names)})]
    if event.data.get("note"):
        parts.append(Part(N_("Note: “%(note)s”."), {"note": _text(event.data["note"])}))
    return parts


def _deadline_extended(event: AuditEventRead, names: _Names) -> list[Part]:
    data = event.data
    params = {
        "round": _round(event, names),
        "deadline": _when(data.get("deadline"), names),
        "reason": _text(data.get("reason")),
    }
    if data.get("whole_round"):
        return [Part(N_("extended the deadline of round %(round)s to %(deadline)s: “%(reason)s”."), params)]
    keys = list(data.get("organisations") or {})
    params["organisations"] = ", ".join(names.organisations.get(key, key) for key in keys) or "?"
    return [
        Part(
            N_(
                "extended the deadline of %(organisations)s in round %(round)s to %(deadline)s: “%(reason)s”."
            ),
            params,
        )
    ]


def _with_deadline(
    text: str, *moments: str, words: Iterable[str] = (), fields: Iterable[str] = ()
) -> Describer:
    chosen = frozenset(words)

    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        params = {"organisation": _organisation_of(event, names), "round": _round(event, names)}
        params |= {name: _when(event.data.get(name), names) for name in moments}
        params |= {name: _text(event.data.get(name)) for name in fields}
        return [Part(text, params, chosen)]

    return describe


def _signed_off(event: AuditEventRead, names: _Names) -> list[Part]:
    data = event.data
    parts = [
        Part(
            N_("signed off round %(round)s: %(decision)s."),
            {"round": _round(event, names), "decision": _text(data.get("decision"))},
            frozenset({"decision"}),
        )
    ]
    if data.get("signer_name"):
        signer = _text(data["signer_name"]) + (
            f", {_text(data['signer_title'])}" if data.get("signer_title") else ""
        )
        parts.append(Part(N_("Signed by %(signer)s."), {"signer": signer}))
    if data.get("verified_by") == "emailed_code":
        parts.append(Part(N_("Confirmed with the code emailed to the signer."), {}))
    elif data.get("verified_by") == "link_only":
        parts.append(Part(N_("Signed with the review link alone (no code asked)."), {}))
    return parts


def _contact_replaced(event: AuditEventRead, names: _Names) -> list[Part]:
    data = event.data
    revoked = data.get("revoked")
    old = (
        ", ".join(str(item.get("email")) for item in revoked if isinstance(item, dict))
        if isinstance(revoked, list)
        else ""
    )
    params = {
        "organisation": _organisation_of(event, names),
        "round": _round(event, names),
        "role": _text(data.get("role")),
        "email": _text(data.get("email")),
        "reason": _text(data.get("reason")),
    }
    if old:
        return [
            Part(
                N_(
                    "replaced the %(role)s of %(organisation)s in round %(round)s, %(old)s, "
                    "with %(email)s: “%(reason)s”."
                ),
                params | {"old": old},
                frozenset({"role"}),
            )
        ]
    return [
        Part(
            N_("made %(email)s the %(role)s of %(organisation)s in round %(round)s: “%(reason)s”."),
            params,
            frozenset({"role"}),
        )
    ]


def _links_issued(event: AuditEventRead, names: _Names) -> list[Part]:
    issued = event.data.get("links")
    emails = (
        ", ".join(str(link.get("email")) for link in issued if isinstance(link, dict))
        if isinstance(issued, list)
        else ""
    )
    return [
        Part(
            N_("Review links were made for %(organisation)s in round %(round)s: %(emails)s."),
            {
                "organisation": _organisation_of(event, names),
                "round": _round(event, names),
                "emails": emails or "—",
            },
        )
    ]


def _escalated(event: AuditEventRead, names: _Names) -> list[Part]:
    params = {
        "organisation": _organisation_of(event, names),
        "round": _round(event, names),
        "deadline": _when(event.data.get("deadline"), names),
    }
    parts = [
        Part(
            N_(
                "%(organisation)s missed its deadline of %(deadline)s in round %(round)s: "
                "the task is overdue."
            ),
            params,
        )
    ]
    if event.data.get("escalation_contact"):
        parts.append(
            Part(
                N_("Its escalation contact %(email)s is told."),
                {"email": _text(event.data["escalation_contact"])},
            )
        )
    return parts


def _handed_over(event: AuditEventRead, names: _Names) -> list[Part]:
    given = event.data.get("to")
    to: dict[str, Any] = given if isinstance(given, dict) else {}
    person = f"{to.get('name')} ({to.get('email')})" if to.get("name") else _text(to.get("email"))
    return [
        Part(
            N_("handed the task of %(organisation)s in round %(round)s over to %(person)s."),
            {"organisation": _organisation_of(event, names), "round": _round(event, names), "person": person},
        )
    ]


def _comment(text: str) -> Describer:
    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        data = event.data
        return [
            Part(
                text,
                {
                    "round": _round(event, names),
                    "section": _text(data.get("section")),
                    "comment": _text(data.get("comment_id")),
                    "kind": _text(data.get("kind")),
                    "weight": _text(data.get("weight")),
                },
                frozenset({"kind", "weight"}),
            )
        ]

    return describe


def _link_resent(event: AuditEventRead, names: _Names) -> list[Part]:
    link_id = event.data.get("link_id")
    email = names.links.get(link_id, "") if isinstance(link_id, str) else ""
    if not email:
        return [Part(N_("sent review links again after a request on the lost-link page."))]
    return [
        Part(
            N_("sent %(email)s their review link for round %(round)s again, as they asked."),
            {"email": email, "round": _round(event, names)},
        )
    ]


def _email(text: str) -> Describer:
    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        data = event.data
        parts = [
            Part(
                text,
                {
                    "kind": _text(data.get("kind")),
                    "to": _text(data.get("to")),
                    "error": _text(data.get("error")),
                },
                frozenset({"kind"}),
            )
        ]
        if event.round_id is not None:
            organisation = _organisation_of(event, names)
            params = {"round": _round(event, names), "organisation": organisation}
            parts.append(
                Part(N_("Round %(round)s, %(organisation)s."), params)
                if organisation
                else Part(N_("Round %(round)s."), params)
            )
        return parts

    return describe


def _user(text: str) -> Describer:
    def describe(event: AuditEventRead, names: _Names) -> list[Part]:
        user_id = event.data.get("user_id")
        email, role = names.users.get(str(user_id), (_text(event.data.get("email")), ""))
        return [
            Part(
                text,
                {
                    "email": _text(event.data.get("email")) or email,
                    "role": _text(event.data.get("role")) or role,
                },
                frozenset({"role"}),
            )
        ]

    return describe


# An action: its sentence, and whether it starts with who did it.
SENTENCES: dict[str, tuple[Describer, bool]] = {
    "organisations.imported": (_imported, True),
    "organisation.created": (_simple(N_("added %(organisation)s to the registry.")), True),
    "organisation.updated": (_organisation_updated, True),
    "organisation.archived": (
        _simple(N_("archived %(organisation)s: it leaves the registry's lists.")),
        True,
    ),
    "document.imported": (
        _document(N_("uploaded the draft “%(title)s” (%(filename)s, %(sections)s sections).")),
        True,
    ),
    "document.version_added": (
        _document(N_("added version %(version)s of “%(title)s” (%(filename)s, %(sections)s sections).")),
        True,
    ),
    "round.created": (_round_created, True),
    "round.updated": (_round_updated, True),
    "round.deleted": (_simple(N_("deleted the draft round %(round)s.")), True),
    "round.launched": (_round_launched, True),
    "round.closed": (_round_closed, True),
    "round.cancelled": (_simple(N_("cancelled round %(round)s: “%(reason)s”."), "reason"), True),
    "deadline.extended": (_deadline_extended, True),
    "extension.requested": (
        _with_deadline(
            N_("asked for more time in round %(round)s, until %(wanted)s: “%(reason)s”."),
            "wanted",
            fields=["reason"],
        ),
        True,
    ),
    "extension.granted": (
        _with_deadline(
            N_("granted %(organisation)s more time in round %(round)s, until %(deadline)s."), "deadline"
        ),
        True,
    ),
    "extension.refused": (
        _simple(N_("refused the request of %(organisation)s for more time in round %(round)s.")),
        True,
    ),
    "signoff.recorded": (_signed_off, True),
    "signoff.code_sent": (
        _simple(N_("asked to sign off in round %(round)s: a code was emailed to %(to)s."), "to"),
        True,
    ),
    "signoff.code_refused": (
        _simple(N_("entered a wrong sign-off code in round %(round)s (try %(attempts)s of 5)."), "attempts"),
        True,
    ),
    "signoff.reopened": (
        _simple(N_("reopened the sign-off of %(organisation)s in round %(round)s: “%(reason)s”."), "reason"),
        True,
    ),
    "task.added": (
        _with_deadline(N_("added %(organisation)s to round %(round)s, deadline %(deadline)s."), "deadline"),
        True,
    ),
    "task.withdrawn": (
        _simple(N_("withdrew %(organisation)s from round %(round)s: “%(reason)s”."), "reason"),
        True,
    ),
    "task.links_resent": (
        _simple(N_("sent %(organisation)s its review links for round %(round)s again.")),
        True,
    ),
    "task.contact_replaced": (_contact_replaced, True),
    "task.links_issued": (_links_issued, False),
    "task.invited": (
        _simple(N_("%(organisation)s was invited to round %(round)s: its first invitation was delivered.")),
        False,
    ),
    "task.opened": (_simple(N_("opened the review page of round %(round)s.")), True),
    "task.reminded": (
        _with_deadline(
            N_("%(organisation)s was reminded of its deadline of %(deadline)s in round %(round)s."),
            "deadline",
        ),
        False,
    ),
    "task.escalated": (_escalated, False),
    "task.no_response": (
        _simple(N_("Round %(round)s closed without a sign-off from %(organisation)s: no response.")),
        False,
    ),
    "task.deemed_content": (
        _simple(
            N_(
                "Round %(round)s closed without a sign-off from %(organisation)s, which is deemed content "
                "(silence means consent)."
            )
        ),
        False,
    ),
    "task.handed_over": (_handed_over, True),
    "comment.added": (
        _comment(N_("commented on section %(section)s in round %(round)s (%(kind)s, %(weight)s).")),
        True,
    ),
    "comment.edited": (_comment(N_("edited comment #%(comment)s in round %(round)s.")), True),
    "comment.withdrawn": (_comment(N_("withdrew comment #%(comment)s in round %(round)s.")), True),
    "link.token_issued": (
        _simple(N_("issued a new review link token for %(email)s in round %(round)s."), "email"),
        True,
    ),
    "link.resent": (_link_resent, True),
    "email.sent": (_email(N_("An email (%(kind)s) was delivered to %(to)s.")), False),
    "email.failed": (_email(N_("An email (%(kind)s) to %(to)s could not be delivered: %(error)s.")), False),
    "user.created": (_user(N_("created the account %(email)s (%(role)s).")), True),
    "user.token_issued": (_user(N_("issued an API token for %(email)s.")), True),
    "user.signed_in": (_simple(N_("signed in to the console.")), True),
    "user.signed_out": (_simple(N_("signed out of the console.")), True),
    "user.token_revoked": (_user(N_("revoked an API token of %(email)s.")), True),
    "user.session_ended": (_user(N_("ended a console session of %(email)s.")), True),
    "user.sessions_ended": (_user(N_("ended console sessions of %(email)s.")), True),
    "user.disabled": (_user(N_("disabled the account %(email)s.")), True),
    "user.password_reset_asked": (_user(N_("A password reset link was asked for %(email)s.")), False),
    "user.password_reset": (_user(N_("reset the password of %(email)s through an emailed link.")), True),
}


def describe(event: AuditEventRead, names: _Names) -> list[Part]:
    """The event as parts of a sentence; an unknown kind (or data not as expected) as a generic one."""
    known = SENTENCES.get(event.action)
    try:
        if known is not None:
            describer, with_actor = known
            parts = describer(event, names)
            return [_actor(event, names), *parts] if with_actor else parts
    except (AttributeError, KeyError, TypeError, ValueError):
        pass  # data not as this module expects (an older event): read as any other
    return _generic(event, names)


def _generic(event: AuditEventRead, names: _Names) -> list[Part]:
    parts = [_actor(event, names), Part(N_("recorded “%(action)s”."), {"action": event.action})]
    organisation = _organisation_of(event, names)
    if event.round_id is not None and organisation:
        parts.append(
            Part(
                N_("Round %(round)s, %(organisation)s."),
                {"round": _round(event, names), "organisation": organisation},
            )
        )
    elif event.round_id is not None:
        parts.append(Part(N_("Round %(round)s."), {"round": _round(event, names)}))
    elif organisation:
        parts.append(Part(N_("Organisation: %(organisation)s."), {"organisation": organisation}))
    return parts
