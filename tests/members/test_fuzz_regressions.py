"""Bad member input the API fuzzer (tests/test_api_fuzz.py) found answered with a 500."""

from __future__ import annotations

from loyalty.db import db
from loyalty.members.models import Member
from tests.factories import error_fields, idem
from tests.members.factories import PROBLEM

# Matches the locale pattern (language + three subtags) but is wider than the 16-char column.
LONG_LOCALE = "SHH_L10ZEJc3_fA8XuiWw-k9"


def test_a_locale_longer_than_its_column_is_a_422_not_a_database_error(client, make):
    member = make.member()
    for path, headers in [
        (f"/v1/members/{member.id}", make.api_key()),
        ("/v1/me/profile", make.member_token(member.id)),
    ]:
        response = client.patch(path, json={"locale": LONG_LOCALE}, headers=idem(headers))
        assert response.status_code == 422 and response.mimetype == PROBLEM, path
        assert "locale" in error_fields(response.json)
    db.session.expire_all()
    assert db.session.get(Member, member.id).locale == "en"


def test_a_locale_of_sixteen_characters_still_fits(client, make):
    member = make.member()
    response = client.patch(
        f"/v1/members/{member.id}",
        json={"locale": "zh-Hant-TW-x1234"},
        headers=idem(make.api_key()),
    )
    assert response.status_code == 200, response.json
    assert response.json["locale"] == "zh-Hant-TW-x1234"
