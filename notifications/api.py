"""Notifications HTTP API: the member's messages and preferences (/v1/me/...), and the
admin side: a member's messages, preferences and consent history, message details, the
recording provider's log, templates (versions, preview, test send).

Who may call what: a member token reads and changes only its own member's data; API keys
need `members:read` to read a member's preferences and the consent texts, and
`members:write` to record consent given at a store, on the web or by an import (a grant
names the consent text in force); everything else here is `admin`.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires, requires_member
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import InvalidInput
from loyalty.http import write_endpoint
from loyalty.members.resolution import get_member
from loyalty.pagination import PageQuery, int_cursor, page, page_of
from notifications import consent, consent_texts, pipeline, queries, templates
from notifications.models import MessageTemplate
from notifications.providers.base import Channel
from notifications.schemas import (
    AdminPreferencesUpdateSchema,
    ConsentHistorySchema,
    ConsentTextPageSchema,
    ConsentTextQuery,
    MemberPreferencesUpdateSchema,
    MessageDetailSchema,
    MessagePageSchema,
    MessageQuery,
    MessageSchema,
    PreferencesSchema,
    RecordedPageSchema,
    RenderedSchema,
    TemplateCreateSchema,
    TemplateListSchema,
    TemplatePreviewSchema,
    TemplateVersionSchema,
    TemplateVersionsSchema,
    TestSendSchema,
)

blp = Blueprint(
    "notifications",
    __name__,
    description="Notifications: message history, consent and preferences, templates",
)
API_KEY = [{"ApiKey": []}]
MEMBER = [{"MemberToken": []}]
E164 = re.compile(r"\+[1-9]\d{6,14}")


def _apply(
    member_id: int, changes: list[dict[str, Any]], *, source: str, place: str | None
) -> None:
    now, actor = utcnow(), current_caller().actor
    locale = get_member(member_id).locale
    for change in changes:
        # A grant names the wording in force for the member's language (the evidence).
        text = (
            consent_texts.in_force(change["channel"], change["purpose"], locale)
            if change["granted"]
            else None
        )
        consent.record_consent(
            member_id,
            Channel(change["channel"]),
            consent.Purpose(change["purpose"]),
            change["granted"],
            source=source,
            now=now,
            actor=actor,
            place=place,
            text_id=text.id if text is not None else None,
        )


# --- the member app ---------------------------------------------------------------------------


@blp.route("/me/messages")
@blp.doc(security=MEMBER)
@requires_member
@blp.arguments(MessageQuery, location="query")
@blp.response(200, MessagePageSchema)
def my_messages(query: dict[str, Any]) -> Any:
    """What we sent (or tried to send) the member, newest first: channel, template,
    state, times."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    return queries.message_page(
        member.id, cursor=query["cursor"], limit=query["limit"],
        state=query["state"], channel=query["channel"],
    )  # fmt: skip


@blp.route("/me/preferences")
@blp.doc(security=MEMBER)
@requires_member
@blp.response(200, PreferencesSchema)
def my_preferences() -> Any:
    """Per channel: marketing consent (off unless given) and transactional messages (on
    unless turned off)."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    return {"preferences": consent.preferences(member.id)}


@blp.route("/me/preferences", methods=["PUT"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint()
@blp.arguments(MemberPreferencesUpdateSchema)
@blp.response(200, PreferencesSchema)
def set_my_preferences(data: dict[str, Any]) -> Any:
    """Change preferences in the app (recorded with source `app`, in the history)."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    _apply(member.id, data["preferences"], source=consent.ConsentSource.APP.value, place=None)
    return {"preferences": consent.preferences(member.id)}


# --- staff and support ------------------------------------------------------------------------


@blp.route("/members/<member:member_id>/messages")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(MessageQuery, location="query")
@blp.response(200, MessagePageSchema)
def member_messages(query: dict[str, Any], member_id: int) -> Any:
    """A member's message history (support)."""
    member = get_member(member_id)
    return queries.message_page(
        member.id, cursor=query["cursor"], limit=query["limit"],
        state=query["state"], channel=query["channel"],
    )  # fmt: skip


@blp.route("/members/<member:member_id>/preferences")
@blp.doc(security=API_KEY)
@requires(scopes.MEMBERS_READ)
@blp.response(200, PreferencesSchema)
def member_preferences(member_id: int) -> Any:
    """A member's consent and preferences (e.g. at the till before asking for consent)."""
    return {"preferences": consent.preferences(get_member(member_id).id)}


@blp.route("/members/<member:member_id>/preferences", methods=["PUT"])
@blp.doc(security=API_KEY)
@requires(scopes.MEMBERS_WRITE)
@write_endpoint()
@blp.arguments(AdminPreferencesUpdateSchema)
@blp.response(200, PreferencesSchema)
def set_member_preferences(data: dict[str, Any], member_id: int) -> Any:
    """Record consent given or withdrawn at a store, on the web, or by an import. A store
    key's store is recorded as the place."""
    member = get_member(member_id)
    _apply(member.id, data["preferences"], source=data["source"], place=current_caller().store_id)
    return {"preferences": consent.preferences(member.id)}


@blp.route("/members/<member:member_id>/consent-history")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, ConsentHistorySchema)
def consent_history(query: dict[str, Any], member_id: int) -> Any:
    """Every consent change of the person, oldest first: what, who, where (source and
    place), when."""
    member = get_member(member_id)
    after = int_cursor(query["cursor"]) or 0
    items = consent.history(member.id, after_id=after, limit=query["limit"] + 1)
    return page(items, query["limit"], key=lambda change: change.id)


@blp.route("/consent-texts")
@blp.doc(security=API_KEY)
@requires(scopes.MEMBERS_READ)
@blp.arguments(ConsentTextQuery, location="query")
@blp.response(200, ConsentTextPageSchema)
def list_consent_texts(query: dict[str, Any]) -> Any:
    """The consent wording in force (the latest version of each), to show before asking a
    member: with `locale`, the one a member with that locale reads per channel and purpose.
    A grant recorded over this API names it (`text_id` in the consent history)."""
    if query["locale"] is None:
        items = list(consent_texts.current_texts().values())
    else:
        found = (
            consent_texts.in_force(channel.value, purpose.value, query["locale"])
            for channel in Channel
            for purpose in consent.Purpose
        )
        items = [text for text in found if text is not None]
    return page_of(items, cursor=query["cursor"], limit=query["limit"], key=lambda t: t.id)


@blp.route("/notifications/messages/<int:message_id>")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.response(200, MessageDetailSchema)
def message_detail(message_id: int) -> Any:
    """One message with its destination, rendered text and every state change."""
    return queries.message_detail(message_id)


@blp.route("/notifications/recorded")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, RecordedPageSchema)
def recorded(query: dict[str, Any]) -> Any:
    """What the recording provider (the embedded default) would have sent, newest first."""
    return queries.recorded_page(cursor=query["cursor"], limit=query["limit"])


# --- templates --------------------------------------------------------------------------------


@blp.route("/notifications/templates")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, TemplateListSchema)
def list_templates(query: dict[str, Any]) -> Any:
    """Every template in use: the shipped defaults (version 0) and the latest stored
    version of each (key, channel, locale)."""
    found = {(d["key"], d["channel"], d["locale"]): 0 for d in templates.shipped_defaults()}
    latest = db.session.execute(
        sa.select(
            MessageTemplate.key,
            MessageTemplate.channel,
            MessageTemplate.locale,
            sa.func.max(MessageTemplate.version),
        ).group_by(MessageTemplate.key, MessageTemplate.channel, MessageTemplate.locale)
    ).all()
    for key, channel, locale, version in latest:
        found[(key, channel, locale)] = version
    # Paged in memory like other small lists, in (key, channel, locale) order: the cursor
    # is the last one's "key/channel/locale" (none of the three holds a "/").
    items = [
        {"key": k, "channel": c, "locale": loc, "version": v} for (k, c, loc), v in found.items()
    ]
    return page_of(
        items, cursor=query["cursor"], limit=query["limit"],
        key=lambda t: f"{t['key']}/{t['channel']}/{t['locale']}",
    )  # fmt: skip


@blp.route("/notifications/templates", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(TemplateCreateSchema)
@blp.response(201, TemplateVersionSchema)
def create_template_version(data: dict[str, Any]) -> Any:
    """Store a new version of a template (Jinja2 blocks `subject`, `body`, `html`); it is
    used from now on, earlier messages keep naming the version they used."""
    return templates.save_version(
        data["key"], Channel(data["channel"]), data["locale"], data["source"],
        actor=current_caller().actor, now=utcnow(),
    )  # fmt: skip


@blp.route("/notifications/templates/<key>/<channel>/<locale>/versions")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, TemplateVersionsSchema)
def template_versions(query: dict[str, Any], key: str, channel: str, locale: str) -> Any:
    """Every stored version of one template, newest first."""
    select = sa.select(MessageTemplate).where(
        MessageTemplate.key == key[:100],
        MessageTemplate.channel == channel[:16],
        MessageTemplate.locale == locale[:16],
    )
    before = int_cursor(query["cursor"])
    if before is not None:
        select = select.where(MessageTemplate.version < before)
    rows = list(
        db.session.scalars(
            select.order_by(MessageTemplate.version.desc()).limit(query["limit"] + 1)
        )
    )
    return page(rows, query["limit"], key=lambda row: row.version)


def _rendered(resolved: templates.ResolvedTemplate, rendered: templates.Rendered) -> dict[str, Any]:
    return {
        "key": resolved.key,
        "channel": resolved.channel.value,
        "locale": resolved.locale,
        "version": resolved.version,
        "subject": rendered.subject,
        "body": rendered.body,
        "html": rendered.html,
        "sms_segments": rendered.sms_segments,
        "characters": len(rendered.body),
    }


@blp.route("/notifications/templates/preview", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(TemplatePreviewSchema)
@blp.response(200, RenderedSchema)
def preview(data: dict[str, Any]) -> Any:
    """Render a template (or a draft `source`) on a real member's data: subject, text,
    HTML and, for SMS, the segment count. Nothing is stored or sent."""
    resolved, rendered = pipeline.render_for_member(
        data["key"], Channel(data["channel"]), member_id=data["member_id"],
        variables=data["variables"], now=utcnow(), locale=data["locale"], source=data["source"],
        marketing=data["purpose"] == consent.Purpose.MARKETING.value,
    )  # fmt: skip
    return _rendered(resolved, rendered)


@blp.route("/notifications/templates/test-send", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(TestSendSchema)
@blp.response(202, MessageSchema)
def test_send(data: dict[str, Any]) -> Any:
    """Send a template, rendered on a real member's data, to the given number or address
    (through the pipeline, like any message; see its state in the answer's message)."""
    channel = Channel(data["channel"])
    to = data["to"].strip()
    if channel is Channel.SMS and not E164.fullmatch(to):
        raise InvalidInput("an SMS test send goes to an E.164 number (+...)", field="to")
    if channel is Channel.EMAIL and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", to):
        raise InvalidInput("not an email address", field="to")
    return pipeline.queue_test_send(
        data["key"], channel, member_id=data["member_id"], to=to,
        variables=data["variables"], now=utcnow(), actor=current_caller().actor,
        marketing=data["purpose"] == consent.Purpose.MARKETING.value,
    )  # fmt: skip
