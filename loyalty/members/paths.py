"""`<member:member_id>` in routes: a member named by our id or by the integrator's own
customer id, `ext:<external id>` (`/v1/members/ext:C-1001/balance`).

The converter only parses; the external id is looked up after authentication (a request
without valid credentials learns nothing about which ids exist), and the handler receives
our integer id like any other route. An unknown external id is a 404 `member-not-found`.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, g, request
from marshmallow import ValidationError as MarshmallowError
from marshmallow import fields
from werkzeug.routing import BaseConverter, Map, ValidationError

from loyalty.db import BIGINT_MAX

EXTERNAL_PREFIX = "ext:"
_EXTERNAL = r"ext:[A-Za-z0-9._:~@+=,;!$*()'-]{1,128}"


class ExternalMemberRef(str):
    """An `ext:` path segment, until the request hook swaps it for the member's id."""


class MemberRefConverter(BaseConverter):
    regex = rf"(?:[0-9]{{1,19}}|{_EXTERNAL})"
    weight = 50

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> int | ExternalMemberRef:
        if value.startswith(EXTERNAL_PREFIX):
            return ExternalMemberRef(value.removeprefix(EXTERNAL_PREFIX))
        number = int(value)
        if not 0 <= number <= BIGINT_MAX:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        if isinstance(value, ExternalMemberRef):
            return EXTERNAL_PREFIX + value
        return str(value)


PARAMETER_SCHEMA = {
    "type": "string",
    "pattern": rf"^([0-9]{{1,19}}|{_EXTERNAL})$",
    "description": "the member's id, or `ext:` and your own customer id (`ext:C-1001`); a "
    "merged member's id answers for the member it was merged into",
    "examples": ["42", "ext:C-1001"],
}


def resolve_external_refs() -> None:
    """Before the handler: every `ext:<id>` path parameter becomes the member's id."""
    if not request.view_args or g.get("caller") is None:
        return  # no credentials: the route's own 401 comes first, nothing is looked up
    from loyalty.members.operations import MemberNotFound, member_id_for_external_id

    for name, value in list(request.view_args.items()):
        if isinstance(value, ExternalMemberRef):
            member_id = member_id_for_external_id(str(value))
            if member_id is None:
                raise MemberNotFound(f"no member has external id {str(value)!r}")
            request.view_args[name] = member_id


def register(app: Flask) -> None:
    """The converter (before any route is added)."""
    app.url_map.converters["member"] = MemberRefConverter


class MemberRef(fields.Field):
    """A member named in a request body: our id (an integer) or `ext:<external id>`.

    Bodies are parsed after authentication, so the lookup tells nothing to a caller without
    credentials; an unknown external id is a 422 naming the field.
    """

    def __init__(self, **kwargs: Any) -> None:
        given = dict(kwargs.pop("metadata", {}))
        about = "the member's id, or `ext:` and your own customer id (`ext:C-1001`)"
        metadata = {
            "type": ["integer", "string"],
            "examples": [42, "ext:C-1001"],
            **given,
            "description": f"{given['description']}: {about}" if "description" in given else about,
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= BIGINT_MAX:
                raise MarshmallowError(f"must be between 1 and {BIGINT_MAX}")
            return value
        if isinstance(value, str) and re.fullmatch(_EXTERNAL, value):
            from loyalty.members.operations import member_id_for_external_id

            member_id = member_id_for_external_id(value.removeprefix(EXTERNAL_PREFIX))
            if member_id is None:
                raise MarshmallowError(f"no member has external id {value[4:]!r}")
            return member_id
        raise MarshmallowError("a member id (integer) or `ext:<your customer id>`")

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class MemberRefList(fields.List):
    """A list of members named as in `MemberRef` (ids and `ext:<id>` mixed), with every
    external id looked up in one query; an unknown one is a 422 naming its index."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_MemberRefSyntax(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        refs: list[int | ExternalMemberRef] = super()._deserialize(value, attr, data, **kwargs)
        external = {ref for ref in refs if isinstance(ref, ExternalMemberRef)}
        if not external:
            return [int(ref) for ref in refs]
        from loyalty.members.operations import member_ids_for_external_ids

        found = member_ids_for_external_ids(sorted(external))
        unknown = {
            index: [f"no member has external id {str(ref)!r}"]
            for index, ref in enumerate(refs)
            if isinstance(ref, ExternalMemberRef) and ref not in found
        }
        if unknown:
            raise MarshmallowError(unknown)
        return [found[ref] if isinstance(ref, ExternalMemberRef) else ref for ref in refs]


class _MemberRefSyntax(MemberRef):
    """One item of a `MemberRefList`: checked here, external ids looked up by the list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(_EXTERNAL, value):
            return ExternalMemberRef(value.removeprefix(EXTERNAL_PREFIX))
        return super()._deserialize(value, attr, data, **kwargs)
