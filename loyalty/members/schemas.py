"""Request and response schemas of the members API."""

from __future__ import annotations

from datetime import date
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from loyalty.ledger.schemas import BalanceSchema
from loyalty.members.models import IdentityKind
from loyalty.members.paths import MemberRef
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import Metadata, MetadataOut, StrictSchema, Text
from loyalty.stores.models import Channel
from loyalty.stores.schemas import COUNTRY, PlainText, iana_timezone, no_control_characters

IDENTITY_KINDS = [kind.value for kind in IdentityKind]
LOCALE = validate.Regexp(
    r"^[a-zA-Z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$", error="a locale, e.g. fr-FR"
)
MAX_ATTRIBUTES = 50


def _past_birthday(value: date) -> None:
    if not date(1900, 1, 1) <= value <= date.today():
        raise ValidationError("a birthday between 1900-01-01 and today")


def _attributes(value: dict[str, Any]) -> None:
    if len(value) > MAX_ATTRIBUTES:
        raise ValidationError(f"at most {MAX_ATTRIBUTES} attributes")
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise ValidationError(f"attribute names are 1-64 characters: {key[:64]!r}")
        no_control_characters(key)
        if isinstance(item, str):
            if len(item) > 500:
                raise ValidationError(f"attribute {key!r}: at most 500 characters")
            no_control_characters(item)
        elif item is not None and not isinstance(item, bool | int | float):
            raise ValidationError(f"attribute {key!r}: text, number, true/false or null")


# The integrator's customer id travels in URLs (`/members/ext:<id>`): no "/", "?", "#", "%".
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9._:~@+=,;!$*()'-]{1,128}$"
EXTERNAL_ID_DESCRIPTION = (
    "your own customer id for this member, unique in the program: 1-128 letters, digits or "
    ". _ : ~ @ + = , ; ! $ * ( ) ' -. Address the member as `ext:<id>` in any path or body "
    "field that names a member, e.g. `/v1/members/ext:C-1001/balance`."
)


def ExternalId(**kwargs: Any) -> fields.String:
    kwargs.setdefault("metadata", {"description": EXTERNAL_ID_DESCRIPTION})
    return fields.String(
        validate=validate.Regexp(
            EXTERNAL_ID_PATTERN, error="1-128 letters, digits or . _ : ~ @ + = , ; ! $ * ( ) ' -"
        ),
        **kwargs,
    )


def Identity(**kwargs: Any) -> fields.String:
    """An identity as typed; normalised (and checked) by loyalty.members.identities."""
    return fields.String(
        validate=[validate.Length(min=1, max=320), no_control_characters], **kwargs
    )


DEFAULT_REGION = fields.String(
    load_default=None,
    validate=COUNTRY,
    metadata={"description": "ISO 3166 alpha-2 for phone numbers without a country code"},
)


def _exactly_one(data: dict[str, Any], names: list[str]) -> str:
    given = [name for name in names if data.get(name) is not None]
    if len(given) != 1:
        raise ValidationError(f"give exactly one of {', '.join(names)}", "_schema")
    return given[0]


# --- requests -------------------------------------------------------------------------------


class IdentitiesSchema(StrictSchema):
    phone = Identity()
    email = Identity()
    app_user = Identity()
    card = Identity()

    @validates_schema
    def at_least_one(self, data: dict[str, Any], **_: Any) -> None:
        if not any(data.get(kind) for kind in IDENTITY_KINDS):
            raise ValidationError("give at least one identity", "_schema")


class SelfProfileSchema(StrictSchema):
    """What a member may change about themselves."""

    name = PlainText(200, allow_none=True)
    birthday = fields.Date(allow_none=True, validate=_past_birthday)
    locale = fields.String(validate=[validate.Length(max=16), LOCALE])  # the column is 16 wide
    timezone = fields.String(validate=iana_timezone)
    home_store_id = Text(64, allow_none=True)


class ProfileSchema(SelfProfileSchema):
    """The whole profile (support and enrolment)."""

    region = PlainText(64, allow_none=True)
    attributes = fields.Dict(
        keys=fields.String(), values=fields.Raw(allow_none=True), validate=_attributes
    )
    external_id = ExternalId(allow_none=True)
    metadata = Metadata(allow_none=True)


class EnrolProfileSchema(ProfileSchema):
    """A new member's profile (the external id is the request's own field)."""

    class Meta:
        exclude = ("external_id",)


class EnrolRequestSchema(StrictSchema):
    identities = fields.Nested(IdentitiesSchema, required=True)
    external_id = ExternalId(
        load_default=None,
        metadata={
            "description": EXTERNAL_ID_DESCRIPTION + " The member with this id is found (200); "
            "else it is set on the member found by an identity when that member has none, or "
            "on the new member. An id that belongs to another member than the identities' is "
            "a 409 `external-id-taken`."
        },
    )
    profile = fields.Nested(EnrolProfileSchema, load_default=dict)
    channel = fields.String(load_default=None, validate=validate.OneOf([c.value for c in Channel]))
    store_id = Text(64, load_default=None, metadata={"description": "default: the key's store"})
    default_region = DEFAULT_REGION


class IdentifyRequestSchema(StrictSchema):
    qr_token = fields.String(validate=validate.Length(min=1, max=512))
    phone = Identity()
    email = Identity()
    card = Identity()
    app_user = Identity()
    external_id = ExternalId()
    default_region = DEFAULT_REGION

    @validates_schema
    def one_reference(self, data: dict[str, Any], **_: Any) -> None:
        _exactly_one(data, ["qr_token", *IDENTITY_KINDS, "external_id"])


class SearchQuery(PageQuery):
    phone = Identity()
    email = Identity()
    card = Identity()
    app_user = Identity()
    external_id = ExternalId()
    default_region = DEFAULT_REGION

    @validates_schema
    def one_identity(self, data: dict[str, Any], **_: Any) -> None:
        _exactly_one(data, [*IDENTITY_KINDS, "external_id"])


class IdentityCreateSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(IDENTITY_KINDS))
    value = Identity(required=True)
    default_region = DEFAULT_REGION


class IdentityDeleteQuery(StrictSchema):
    value = Identity(load_default=None, metadata={"description": "when several of that kind"})


class BlockRequestSchema(StrictSchema):
    reason = PlainText(500, required=True)


class MergeRequestSchema(StrictSchema):
    merged_member_id = MemberRef(required=True)
    reason = PlainText(500, required=True)


# --- responses ------------------------------------------------------------------------------


def mask_name(name: str | None) -> str | None:
    """'Jane Doe' -> 'J*** D***': enough for the till to greet, not to learn the name."""
    if not name:
        return None
    return " ".join(word[0] + "***" for word in name.split())


class MemberSummarySchema(StrictSchema):
    """What a till may know: no identities, no profile."""

    id = fields.Integer()
    masked_name = fields.Function(lambda member: mask_name(member.name))
    tier = fields.String(attribute="tier_code", allow_none=True)
    status = fields.String()


class EnrolResultSchema(StrictSchema):
    created = fields.Boolean()
    member = fields.Nested(MemberSummarySchema)


class IdentifyResultSchema(StrictSchema):
    member = fields.Nested(MemberSummarySchema)
    balance = fields.Nested(BalanceSchema)


class IdentitySchema(StrictSchema):
    kind = fields.String()
    value = fields.String()
    created_at = fields.DateTime()


class ProfileResponseSchema(StrictSchema):
    id = fields.Integer()
    status = fields.String()
    tier = fields.String(attribute="tier_code", allow_none=True)
    name = fields.String(allow_none=True)
    birthday = fields.Date(allow_none=True)
    locale = fields.String()
    timezone = fields.String()
    home_store_id = fields.String(allow_none=True)
    identities = fields.List(fields.Nested(IdentitySchema))


class MemberSchema(ProfileResponseSchema):
    """Support's full view of a member."""

    external_id = fields.String(allow_none=True, metadata={"description": EXTERNAL_ID_DESCRIPTION})
    metadata = MetadataOut()

    region = fields.String(allow_none=True)
    attributes = fields.Dict()
    enrolled_channel = fields.String(allow_none=True)
    enrolled_store_id = fields.String(allow_none=True)
    merged_into_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    erased_at = fields.DateTime(allow_none=True)


MemberListSchema = page_schema(MemberSchema)


class MergeSchema(StrictSchema):
    id = fields.Integer()
    survivor_id = fields.Integer()
    merged_id = fields.Integer()
    actor = fields.String()
    reason = fields.String(allow_none=True)
    summary = fields.Dict()
    created_at = fields.DateTime()


class ExportSchema(StrictSchema):
    exported_at = fields.String()
    member = fields.Dict()
    identities = fields.List(fields.Dict())
    merged_members = fields.List(fields.Dict())
    balance = fields.Dict()
    ledger_transactions = fields.List(fields.Dict())
    point_lots = fields.List(fields.Dict())
    point_holds = fields.List(fields.Dict())
    merges = fields.List(fields.Dict())
    sections = fields.Dict()


class ErasureSchema(StrictSchema):
    member_id = fields.Integer()
    erased_at = fields.DateTime()
    summary = fields.Dict()
