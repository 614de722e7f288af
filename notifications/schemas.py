"""Request and response schemas of the notifications API."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate, validates

from loyalty.members.paths import MemberRef
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import StrictSchema, Text
from notifications.consent import ConsentSource, Purpose
from notifications.models import MessageState
from notifications.providers.base import Channel

CHANNELS = [c.value for c in Channel]
PURPOSES = [p.value for p in Purpose]
TEMPLATE_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")


class MessageQuery(PageQuery):
    state = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in MessageState])
    )
    channel = fields.String(load_default=None, validate=validate.OneOf(CHANNELS))


class MessageSchema(StrictSchema):
    """A message as its recipient and support see it (no rendered text: it may be long and
    the export has it)."""

    id = fields.Integer()
    channel = fields.String()
    template = fields.String()
    template_version = fields.Integer(allow_none=True)
    locale = fields.String(allow_none=True)
    purpose = fields.String()
    state = fields.String()
    reason = fields.String(allow_none=True)
    sms_segments = fields.Integer(allow_none=True)
    attempts = fields.Integer()
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    failed_at = fields.AwareDateTime(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True)


MessagePageSchema = page_schema(MessageSchema)


class TransitionSchema(StrictSchema):
    state = fields.String(attribute="to_state")
    reason = fields.String(allow_none=True)
    at = fields.AwareDateTime()


class MessageDetailSchema(MessageSchema):
    member_id = fields.Integer(allow_none=True)
    destination = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    body = fields.String(allow_none=True)
    provider = fields.String(allow_none=True)
    provider_message_id = fields.String(allow_none=True)
    transitions = fields.List(fields.Nested(TransitionSchema))


class PreferenceSchema(StrictSchema):
    channel = fields.String()
    purpose = fields.String()
    granted = fields.Boolean()
    explicit = fields.Boolean()
    source = fields.String(allow_none=True)
    updated_at = fields.AwareDateTime(allow_none=True)


class PreferencesSchema(StrictSchema):
    preferences = fields.List(fields.Nested(PreferenceSchema))


class PreferenceChangeSchema(StrictSchema):
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    granted = fields.Boolean(required=True, truthy={True}, falsy={False})


class MemberPreferencesUpdateSchema(StrictSchema):
    preferences = fields.List(
        fields.Nested(PreferenceChangeSchema),
        required=True,
        validate=validate.Length(min=1, max=len(CHANNELS) * len(PURPOSES)),
    )


class AdminPreferencesUpdateSchema(MemberPreferencesUpdateSchema):
    # Where the member gave or withdrew consent (the app's own changes come with its token).
    source = fields.String(
        required=True,
        validate=validate.OneOf(
            [ConsentSource.STORE.value, ConsentSource.WEB.value, ConsentSource.IMPORT.value]
        ),
    )


class ConsentChangeSchema(StrictSchema):
    id = fields.Integer()
    channel = fields.String()
    purpose = fields.String()
    granted = fields.Boolean()
    source = fields.String()
    actor = fields.String()
    place = fields.String(allow_none=True)
    at = fields.AwareDateTime()
    text_id = fields.Integer(
        allow_none=True, metadata={"description": "the consent text agreed to (grants only)"}
    )


ConsentHistorySchema = page_schema(ConsentChangeSchema, "ConsentHistorySchema")


class RecordedSchema(StrictSchema):
    id = fields.Integer()
    message_id = fields.Integer()
    channel = fields.String()
    destination = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    body = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    marketing = fields.Boolean()
    calls = fields.Integer()
    recorded_at = fields.AwareDateTime()


RecordedPageSchema = page_schema(RecordedSchema)


class _TemplateRef(StrictSchema):
    key = fields.String(required=True, validate=validate.Regexp(TEMPLATE_KEY))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))


class TemplateCreateSchema(_TemplateRef):
    locale = fields.String(
        required=True, validate=[validate.Length(max=16), validate.Regexp(LOCALE)]
    )
    source = Text(20_000, required=True)


class TemplateVersionSchema(StrictSchema):
    id = fields.Integer()
    key = fields.String()
    channel = fields.String()
    locale = fields.String()
    version = fields.Integer()
    source = fields.String()
    created_at = fields.AwareDateTime()
    created_by = fields.String()


class TemplateListItemSchema(StrictSchema):
    key = fields.String()
    channel = fields.String()
    locale = fields.String()
    version = fields.Integer()


TemplateListSchema = page_schema(TemplateListItemSchema, "TemplateListSchema")
TemplateVersionsSchema = page_schema(TemplateVersionSchema, "TemplateVersionsSchema")


class _RenderFor(_TemplateRef):
    member_id = MemberRef(required=True)
    purpose = fields.String(
        load_default=Purpose.TRANSACTIONAL.value,
        validate=validate.OneOf(PURPOSES),
        metadata={"description": "marketing: with the opt-out line every marketing send "
                  "adds (SMS: reply STOP; email: the unsubscribe link)"},
    )  # fmt: skip
    locale = fields.String(
        load_default=None, validate=[validate.Length(max=16), validate.Regexp(LOCALE)]
    )
    variables = fields.Dict(keys=fields.String(validate=validate.Length(max=64)), load_default=dict)

    @validates("variables")
    def small(self, value: dict, **_: object) -> None:
        if len(value) > 50:
            raise ValidationError("at most 50 variables")


class TemplatePreviewSchema(_RenderFor):
    source = Text(20_000, load_default=None)  # preview a draft before saving it


class TestSendSchema(_RenderFor):
    to = Text(2000, required=True)


class RenderedSchema(StrictSchema):
    key = fields.String()
    channel = fields.String()
    locale = fields.String()
    version = fields.Integer()
    subject = fields.String(allow_none=True)
    body = fields.String()
    html = fields.String(allow_none=True)
    sms_segments = fields.Integer(allow_none=True)
    characters = fields.Integer()


class ConsentTextQuery(PageQuery):
    locale = fields.String(
        load_default=None,
        validate=[validate.Length(max=16), validate.Regexp(LOCALE)],
        metadata={
            "description": "a member's locale (zh-CN): the text in force for it per channel and "
            "purpose (its language, else English); without: every language's"
        },
    )


class ConsentTextSchema(StrictSchema):
    id = fields.Integer(metadata={"description": "named by consent history entries (text_id)"})
    channel = fields.String()
    purpose = fields.String()
    locale = fields.String(metadata={"description": "the text's language: en or zh"})
    version = fields.Integer()
    text = fields.String()
    created_at = fields.AwareDateTime()


ConsentTextPageSchema = page_schema(ConsentTextSchema, "ConsentTextPageSchema")
