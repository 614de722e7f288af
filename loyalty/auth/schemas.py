from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from loyalty.auth import scopes
from loyalty.members.paths import MemberRef
from loyalty.schemas import StrictSchema, Text


class ApiClientCreateSchema(StrictSchema):
    name = Text(120, required=True)
    scopes = fields.List(
        fields.String(validate=validate.OneOf(sorted(scopes.ALL))),
        required=True,
        validate=validate.Length(min=1),
    )
    store_id = Text(64, load_default=None)


class ApiClientSchema(StrictSchema):
    id = fields.Integer()
    name = fields.String()
    key_prefix = fields.String()
    scopes = fields.List(fields.String())
    store_id = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class ApiClientCreatedSchema(ApiClientSchema):
    key = fields.String(metadata={"description": "shown once; store it now"})


class MemberTokenRequestSchema(StrictSchema):
    member_id = MemberRef(load_default=None)
    app_user = Text(128, load_default=None)

    @validates_schema
    def one_reference(self, data: dict, **_: object) -> None:
        if (data.get("member_id") is None) == (data.get("app_user") is None):
            raise ValidationError("give exactly one of member_id or app_user", "_schema")


class MemberTokenSchema(StrictSchema):
    token = fields.String()
    member_id = fields.Integer()
    expires_at = fields.DateTime()
