"""The notifications API: members see and change only their own data; staff keys need
their scopes; templates are versioned, previewed on real data and test-sent."""

from __future__ import annotations

from loyalty.auth import scopes
from notifications import templates
from notifications.consent import Purpose
from notifications.providers.base import Channel
from tests.factories import error_fields, idem
from tests.notifications.factories import queue, reload, send_round

PHONE = "+4915112345678"


def pref(body: dict, channel: str, purpose: str) -> dict:
    return next(
        p for p in body["preferences"] if (p["channel"], p["purpose"]) == (channel, purpose)
    )


class TestMemberApp:
    def test_a_member_pages_through_their_own_messages_only(self, client, make):
        me, other = make.member(phone=PHONE), make.member(phone="+4915199999999")
        mine = [queue(me.id).id for _ in range(3)]
        queue(other.id)
        send_round()
        token = make.member_token(me.id)
        first = client.get("/v1/me/messages?limit=2", headers=token)
        assert first.status_code == 200
        assert [m["id"] for m in first.json["items"]] == mine[:0:-1]
        assert first.json["items"][0]["state"] == "sent"
        assert first.json["items"][0]["template"] == "points_earned"
        assert "body" not in first.json["items"][0]
        rest = client.get(f"/v1/me/messages?cursor={first.json['next_cursor']}", headers=token)
        assert [m["id"] for m in rest.json["items"]] == mine[:1]
        assert rest.json["next_cursor"] is None

    def test_marketing_is_off_and_transactional_on_until_the_member_changes_them(
        self, client, make
    ):
        member = make.member()
        token = make.member_token(member.id)
        shown = client.get("/v1/me/preferences", headers=token).json
        assert pref(shown, "sms", "marketing")["granted"] is False
        assert pref(shown, "sms", "transactional")["granted"] is True
        changed = client.put(
            "/v1/me/preferences",
            json={"preferences": [{"channel": "email", "purpose": "marketing", "granted": True}]},
            headers=idem(token),
        )
        assert changed.status_code == 200
        email = pref(changed.json, "email", "marketing")
        assert email["granted"] is True and email["source"] == "app" and email["explicit"]

    def test_a_malformed_preference_is_a_422_naming_the_field(self, client, make):
        token = make.member_token(make.member().id)
        bad = client.put(
            "/v1/me/preferences",
            json={"preferences": [{"channel": "fax", "purpose": "marketing", "granted": "yes"}]},
            headers=idem(token),
        )
        assert bad.status_code == 422
        assert set(error_fields(bad.json)) == {"preferences.0.channel", "preferences.0.granted"}


class TestStaff:
    def test_consent_given_at_a_store_is_recorded_with_who_where_and_when(self, client, make):
        member = make.member()
        store = make.store("S-BERLIN")
        till = make.api_key(scopes.MEMBERS_WRITE, scopes.MEMBERS_READ, store_id=store.id)
        given = client.put(
            f"/v1/members/{member.id}/preferences",
            json={"source": "store",
                  "preferences": [{"channel": "sms", "purpose": "marketing", "granted": True}]},
            headers=idem(till),
        )  # fmt: skip
        assert given.status_code == 200
        assert pref(given.json, "sms", "marketing")["source"] == "store"
        history = client.get(
            f"/v1/members/{member.id}/consent-history", headers=make.api_key(scopes.ADMIN)
        ).json["items"]
        assert len(history) == 1
        assert history[0]["place"] == "S-BERLIN" and history[0]["actor"].startswith("client:")
        assert history[0]["granted"] is True and history[0]["source"] == "store"

    def test_a_staff_key_cannot_claim_the_app_or_the_provider_as_source(self, client, make):
        member = make.member()
        response = client.put(
            f"/v1/members/{member.id}/preferences",
            json={"source": "provider",
                  "preferences": [{"channel": "sms", "purpose": "marketing", "granted": True}]},
            headers=idem(make.api_key(scopes.MEMBERS_WRITE)),
        )  # fmt: skip
        assert response.status_code == 422 and "source" in error_fields(response.json)

    def test_support_reads_a_members_messages_and_one_message_with_its_transitions(
        self, client, make
    ):
        member = make.member(phone=PHONE)
        message = queue(member.id)
        send_round()
        admin = make.api_key(scopes.ADMIN)
        page = client.get(f"/v1/members/{member.id}/messages", headers=admin).json
        assert [m["id"] for m in page["items"]] == [message.id]
        detail = client.get(f"/v1/notifications/messages/{message.id}", headers=admin).json
        assert [t["state"] for t in detail["transitions"]] == ["queued", "sending", "sent"]
        assert detail["destination"] == PHONE
        assert client.get("/v1/notifications/messages/999", headers=admin).status_code == 404

    def test_the_recording_provider_log_is_readable_by_admins(self, client, make):
        member = make.member(phone=PHONE)
        message = queue(member.id)
        send_round()
        log = client.get("/v1/notifications/recorded", headers=make.api_key(scopes.ADMIN))
        assert [r["message_id"] for r in log.json["items"]] == [message.id]
        assert log.json["items"][0]["destination"] == PHONE

    def test_a_member_token_never_reads_another_members_data(self, client, make):
        me, other = make.member(), make.member()
        token = make.member_token(me.id)
        for path in (
            f"/v1/members/{other.id}/messages",
            f"/v1/members/{other.id}/preferences",
            f"/v1/members/{other.id}/consent-history",
            "/v1/notifications/recorded",
        ):
            assert client.get(path, headers=token).status_code == 403, path  # fmt: skip


class TestTemplates:
    def test_a_new_version_is_used_from_then_on_and_recorded_on_the_message(self, client, make):
        admin = make.api_key(scopes.ADMIN)
        member = make.member(phone=PHONE)
        created = client.post(
            "/v1/notifications/templates",
            json={"key": "points_earned", "channel": "sms", "locale": "en",
                  "source": "{% block body %}+{{ points | number }} pts{% endblock %}"},
            headers=idem(admin),
        )  # fmt: skip
        assert created.status_code == 201 and created.json["version"] == 1
        message = queue(member.id, variables={"points": 1500})
        send_round()
        sent = reload(message.id)
        assert (sent.body, sent.template_version) == ("+1,500 pts", 1)
        listed = client.get("/v1/notifications/templates", headers=admin).json["items"]
        assert {"key": "points_earned", "channel": "sms", "locale": "en", "version": 1} in listed
        assert {"key": "points_earned", "channel": "sms", "locale": "zh-CN", "version": 0} in (
            listed
        )
        versions = client.get(
            "/v1/notifications/templates/points_earned/sms/en/versions", headers=admin
        )
        assert [v["version"] for v in versions.json["items"]] == [1]

    def test_a_template_that_does_not_compile_is_refused(self, client, make):
        response = client.post(
            "/v1/notifications/templates",
            json={"key": "x", "channel": "sms", "locale": "en", "source": "{% block body %}{{"},
            headers=idem(make.api_key(scopes.ADMIN)),
        )
        assert response.status_code == 422 and "source" in error_fields(response.json)

    def test_preview_renders_on_a_real_member_with_segments(self, client, make):
        member = make.member(name="王小明", locale="zh-CN", timezone="Asia/Shanghai", points=80)
        response = client.post(
            "/v1/notifications/templates/preview",
            json={"key": "points_expiring", "channel": "sms", "member_id": member.id,
                  "variables": {"points": 80, "expires_at": "2026-12-31T16:30:00+00:00"}},
            headers=make.api_key(scopes.ADMIN),
        )  # fmt: skip
        assert response.status_code == 200, response.json
        body = response.json["body"]
        assert "王小明" in body and "2027年1月1日" in body  # 16:30 UTC is the next day there
        assert response.json["sms_segments"] == 1 and response.json["locale"] == "zh-CN"

    def test_a_marketing_preview_and_test_send_show_the_opt_out_line_in_the_segments(
        self, client, make
    ):
        member = make.member(phone=PHONE, name="王小明", locale="zh-CN")
        asked = {"key": "campaign_offer", "channel": "sms", "member_id": member.id,
                 "variables": {"points": 100}}  # fmt: skip
        admin = make.api_key(scopes.ADMIN)
        plain = client.post("/v1/notifications/templates/preview", json=asked, headers=admin)
        preview = client.post(
            "/v1/notifications/templates/preview", json={**asked, "purpose": "marketing"},
            headers=admin,
        )  # fmt: skip
        assert preview.status_code == 200, preview.json
        assert "STOP" not in plain.json["body"]
        assert preview.json["body"] == plain.json["body"] + "回复STOP退订"
        assert preview.json["sms_segments"] == templates.sms_segments(preview.json["body"])

        sent = client.post(
            "/v1/notifications/templates/test-send",
            json={**asked, "purpose": "marketing", "to": "+8613800138000"},
            headers=idem(admin),
        )  # fmt: skip
        assert sent.status_code == 202, sent.json
        send_round()
        assert reload(sent.json["id"]).body == preview.json["body"]

    def test_a_draft_escaping_the_sandbox_is_a_422_not_a_500(self, client, make):
        member = make.member()
        response = client.post(
            "/v1/notifications/templates/preview",
            json={"key": "x", "channel": "sms", "member_id": member.id,
                  "source": "{% block body %}{{ ''.__class__.__mro__ }}{% endblock %}"},
            headers=make.api_key(scopes.ADMIN),
        )  # fmt: skip
        assert response.status_code == 422

    def test_a_test_send_goes_to_the_given_number_with_the_members_data(self, client, make):
        member = make.member(phone=PHONE, name="Ada")
        response = client.post(
            "/v1/notifications/templates/test-send",
            json={"key": "points_earned", "channel": "sms", "member_id": member.id,
                  "to": "+8613800138000", "variables": {"points": 5}},
            headers=idem(make.api_key(scopes.ADMIN)),
        )  # fmt: skip
        assert response.status_code == 202
        send_round()
        sent = reload(response.json["id"])
        assert sent.destination == "+8613800138000" and "Ada" in sent.body
        assert sent.member_id is None  # not part of the member's own history

    def test_a_test_send_goes_to_the_given_address_with_the_members_data(self, client, make):
        member = make.member(email="ada@example.com", name="Ada", locale="zh-CN")
        response = client.post(
            "/v1/notifications/templates/test-send",
            json={"key": "points_earned", "channel": "email", "member_id": member.id,
                  "to": "qa@loyalty.example.com", "variables": {"points": 5}},
            headers=idem(make.api_key(scopes.ADMIN)),
        )  # fmt: skip
        assert response.status_code == 202, response.json
        send_round()
        sent = reload(response.json["id"])
        assert (sent.state, sent.destination) == ("sent", "qa@loyalty.example.com")
        assert "Ada" in sent.body and sent.locale == "zh-CN" and sent.subject
        assert sent.member_id is None

    def test_a_test_send_to_something_that_is_not_a_number_is_refused(self, client, make):
        member = make.member()
        response = client.post(
            "/v1/notifications/templates/test-send",
            json={"key": "points_earned", "channel": "sms", "member_id": member.id,
                  "to": "call me"},
            headers=idem(make.api_key(scopes.ADMIN)),
        )  # fmt: skip
        assert response.status_code == 422 and "to" in error_fields(response.json)


def test_purpose_and_channel_names_are_the_contracts():
    assert [p.value for p in Purpose] == ["transactional", "marketing"]
    assert [c.value for c in Channel] == ["sms", "email", "push"]
