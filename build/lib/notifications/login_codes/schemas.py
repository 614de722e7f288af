"""Schemas of the member login-code API."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from loyalty.schemas import StrictSchema, Text


class DestinationSchema(StrictSchema):
    phone = Text(
        32,
        metadata={"description": "E.164, or national with the default region (SMS code)"},
    )
    email = Text(320, metadata={"description": "an email address (email code)"})

    @validates_schema
    def one_destination(self, data: dict[str, Any], **_: Any) -> None:
        if ("phone" in data) == ("email" in data):
            raise ValidationError("give either phone or email", field_name="_schema")


class CodeRequestedSchema(StrictSchema):
    channel = fields.String(metadata={"description": "sms or email"})
    expires_at = fields.DateTime()


class VerifySchema(DestinationSchema):
    code = fields.String(
        required=True, validate=validate.Regexp(r"^[0-9]{6}$", error="a code is 6 digits")
    )


class LoginTokenSchema(StrictSchema):
    token = fields.String(metadata={"description": "a member token (Authorization: Bearer)"})
    member_id = fields.Integer()
    enrolled = fields.Boolean(metadata={"description": "true: a new member was enrolled"})
    expires_at = fields.DateTime()
