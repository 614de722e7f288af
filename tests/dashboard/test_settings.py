"""Settings from the dashboard: earning rules, webhooks, consent texts, template versions
and two-step sign-in enrolment. Each runs the admin API's operation, is audited, and an
invalid form shows why and writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.dashboard.models import AuditEntry, DashboardUser
from loyalty.db import db
from loyalty.earning.models import EarningRule
from notifications.consent import ConsentChange
from notifications.consent_texts import ConsentText
from notifications.models import MessageTemplate
from notifications.webhooks.models import WebhookDelivery, WebhookSubscription
from tests.dashboard.conftest import post_form


def _entries(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def _count(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


# --- earning rules ------------------------------------------------------------------------


BONUS_RULE = {"name": "Weekend bonus", "kind": "bonus", "bonus_points": "50", "active": "on",
              "channels": ["store", "app"], "categories": "shoes, running"}  # fmt: skip


def test_an_admin_creates_a_rule_that_the_api_lists_and_the_audit_log_records(
    signed_in, client, make
):
    admin = signed_in("admin")
    response = post_form(admin, "/dashboard/settings/rules/new", BONUS_RULE)
    assert response.status_code == 302 and response.headers["Location"].endswith("#rule")

    listed = client.get("/v1/earning-rules", headers=make.api_key("admin")).get_json()["items"]
    [rule] = [r for r in listed if r["name"] == "Weekend bonus"]
    assert rule["bonus_points"] == 50 and rule["active"] is True
    assert rule["channels"] == ["store", "app"] and rule["categories"] == ["shoes", "running"]
    [entry] = _entries("earning_rules.create")
    assert (entry.target_type, entry.target_id) == ("earning_rule", str(rule["id"]))
    assert entry.before is None and entry.after["bonus_points"] == 50
    assert "Weekend bonus" in admin.get("/dashboard/settings").get_data(as_text=True)


def test_an_invalid_rule_shows_the_error_keeps_the_form_and_writes_nothing(signed_in):
    admin = signed_in("admin")
    # The API's cross-field rule: a bonus needs bonus_points.
    response = post_form(admin, "/dashboard/settings/rules/new", {**BONUS_RULE, "bonus_points": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "a bonus needs bonus_points" in html and 'value="Weekend bonus"' in html
    # The API's schema: not a number.
    response = post_form(
        admin, "/dashboard/settings/rules/new", {**BONUS_RULE, "bonus_points": "x"}
    )
    assert response.status_code == 422 and "bonus_points" in response.get_data(as_text=True)
    assert _count(EarningRule) == 0 and _entries("earning_rules.create") == []


def test_edit_and_switch_a_rule_with_before_and_after(signed_in):
    from loyalty.earning.operations import create_rule

    rule = create_rule({"name": "Base", "kind": "base_rate", "currency": "EUR", "points": 1,
                        "per_minor": 100}, now=utcnow()).id  # fmt: skip
    db.session.commit()
    admin = signed_in("admin")
    page = admin.get(f"/dashboard/settings/rules/{rule}").get_data(as_text=True)
    assert 'value="Base"' in page and 'value="EUR"' in page

    form = {"name": "Base x2", "kind": "base_rate", "currency": "EUR", "points": "2",
            "per_minor": "100", "active": "on"}  # fmt: skip
    assert post_form(admin, f"/dashboard/settings/rules/{rule}", form).status_code == 302
    [entry] = _entries("earning_rules.update")
    assert entry.before["points"] == 1 and entry.after["points"] == 2
    assert entry.after["name"] == "Base x2"

    post_form(admin, "/dashboard/settings", {"action": "rule-deactivate", "rule_id": str(rule)})
    db.session.expire_all()
    assert db.session.get(EarningRule, rule).active is False
    [off] = _entries("earning_rules.deactivate")
    assert off.before["active"] is True and off.after["active"] is False
    post_form(admin, "/dashboard/settings", {"action": "rule-activate", "rule_id": str(rule)})
    db.session.expire_all()
    assert db.session.get(EarningRule, rule).active is True


def test_an_edit_the_api_refuses_changes_nothing(signed_in):
    from loyalty.earning.operations import create_rule

    rule = create_rule({"name": "Cap", "kind": "order_cap", "max_points": 500}, now=utcnow()).id
    db.session.commit()
    admin = signed_in("admin")
    form = {"name": "Cap", "kind": "order_cap", "max_points": "", "active": "on"}
    response = post_form(admin, f"/dashboard/settings/rules/{rule}", form)
    assert response.status_code == 422
    assert "an order cap needs max_points" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(EarningRule, rule).max_points == 500
    assert _entries("earning_rules.update") == []


# --- webhooks -----------------------------------------------------------------------------


def _webhook(admin, **extra):
    form = {"action": "webhook", "url": "http://127.0.0.1:9/hook",
            "topics": ["points.earned", "tier.changed"], **extra}  # fmt: skip
    return post_form(admin, "/dashboard/settings", form)


def test_a_webhook_is_created_with_its_secret_shown_once(signed_in, client, make, allow_private):
    admin = signed_in("admin")
    response = _webhook(admin, description="crm")
    html = response.get_data(as_text=True)
    [subscription] = db.session.scalars(sa.select(WebhookSubscription)).all()
    assert response.status_code == 200 and subscription.secret in html
    assert subscription.topics == ["points.earned", "tier.changed"]
    assert subscription.secret not in admin.get("/dashboard/settings").get_data(as_text=True)
    listed = client.get("/v1/webhooks", headers=make.api_key("admin")).get_json()["items"]
    assert [w["url"] for w in listed] == ["http://127.0.0.1:9/hook"]
    [entry] = _entries("webhooks.create")
    assert entry.after["url"] == "http://127.0.0.1:9/hook"
    assert subscription.secret not in str(entry.after)  # the log never holds a secret


def test_an_unsafe_or_unknown_webhook_is_refused(signed_in):
    admin = signed_in("admin")
    response = _webhook(admin)  # loopback, and private targets are not allowed by default
    assert response.status_code == 302
    assert "private and loopback" in admin.get("/dashboard/settings").get_data(as_text=True)
    form = {"action": "webhook", "url": "https://203.0.113.5/x", "topics": ["no.such"]}
    post_form(admin, "/dashboard/settings", form)
    assert _count(WebhookSubscription) == 0 and _entries("webhooks.create") == []


def test_rotate_disable_enable_delete_and_failures(signed_in, allow_private):
    admin = signed_in("admin")
    _webhook(admin)
    subscription = db.session.scalars(sa.select(WebhookSubscription)).one()
    first_secret, sid = subscription.secret, subscription.id
    now = utcnow()
    db.session.add(
        WebhookDelivery(subscription_id=sid, event_id=1, topic="points.earned", body="{}",
                        status="failed", attempts=3, next_attempt_at=now, last_attempt_at=now,
                        last_status_code=503, created_at=now, updated_at=now)
    )  # fmt: skip
    db.session.commit()
    assert "503" in admin.get("/dashboard/settings").get_data(as_text=True)

    rotated = post_form(admin, "/dashboard/settings",
                        {"action": "webhook-rotate", "subscription_id": str(sid),
                         "keep_previous_seconds": "3600"})  # fmt: skip
    db.session.expire_all()
    subscription = db.session.get(WebhookSubscription, sid)
    assert subscription.secret != first_secret and subscription.previous_secret == first_secret
    assert subscription.secret in rotated.get_data(as_text=True)
    assert subscription.previous_secret_expires_at <= utcnow() + timedelta(seconds=3600)

    for action, status in (("webhook-disable", "disabled"), ("webhook-enable", "active")):
        post_form(admin, "/dashboard/settings", {"action": action, "subscription_id": str(sid)})
        db.session.expire_all()
        assert db.session.get(WebhookSubscription, sid).status == status
    assert _entries("webhooks.disable")[0].after["status"] == "disabled"

    post_form(
        admin, "/dashboard/settings", {"action": "webhook-delete", "subscription_id": str(sid)}
    )
    assert _count(WebhookSubscription) == 0 and _count(WebhookDelivery) == 0
    [deleted] = _entries("webhooks.delete")
    assert deleted.before["url"] == "http://127.0.0.1:9/hook" and deleted.after is None


# --- consent texts ------------------------------------------------------------------------


def test_consent_texts_are_versioned_and_api_grants_name_the_text(signed_in, client, make):
    admin = signed_in("admin")
    page = "/dashboard/settings/consent-texts?channel=sms&purpose=marketing&locale=zh"
    for text in ("我同意接收营销短信。", "我同意接收营销短信。回复 TD 退订。"):
        response = post_form(admin, page, {"text": text}, page=page)
        assert response.status_code == 302
    rows = db.session.scalars(sa.select(ConsentText).order_by(ConsentText.version)).all()
    assert [(r.locale, r.version) for r in rows] == [("zh", 1), ("zh", 2)]  # both kept
    html = admin.get(page).get_data(as_text=True)
    assert "v2" in html and "我同意接收营销短信。" in html  # the history shows v1 too
    [first, second] = _entries("consent_texts.publish")
    assert first.after["version"] == 1 and first.after["locale"] == "zh"
    assert second.after["replaces_version"] == 1

    member = make.member(phone="+8613800138000")
    db.session.execute(
        sa.update(type(member)).where(type(member).id == member.id).values(locale="zh-CN")
    )
    db.session.commit()
    response = client.put(
        f"/v1/members/{member.id}/preferences",
        json={"source": "store", "preferences": [
            {"channel": "sms", "purpose": "marketing", "granted": True},
            {"channel": "email", "purpose": "marketing", "granted": True},
        ]},
        headers={**make.api_key("members:write"), "Idempotency-Key": "consent-1"},
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    changes = {c.channel: c.text_id for c in db.session.scalars(sa.select(ConsentChange))}
    assert changes == {"sms": rows[1].id, "email": None}  # no email text published
    history = client.get(
        f"/v1/members/{member.id}/consent-history", headers=make.api_key("admin")
    ).get_json()["items"]
    assert {h["channel"]: h["text_id"] for h in history}["sms"] == rows[1].id
    # What a till shows before asking: the text in force for the member's locale.
    texts = client.get(
        "/v1/consent-texts?locale=zh-CN", headers=make.api_key("members:read")
    ).get_json()["items"]
    assert [(t["channel"], t["locale"], t["version"]) for t in texts] == [("sms", "zh", 2)]


def test_reading_consent_texts_takes_the_members_read_scope(client, make):
    refused = client.get("/v1/consent-texts", headers=make.api_key("orders:write"))
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    allowed = client.get("/v1/consent-texts", headers=make.api_key("members:read"))
    assert allowed.status_code == 200 and allowed.get_json()["items"] == []


def test_an_empty_consent_text_is_refused_and_the_table_is_append_only(signed_in, app):
    admin = signed_in("admin")
    page = "/dashboard/settings/consent-texts?channel=email&purpose=marketing&locale=en"
    response = post_form(admin, page, {"text": "   "}, page=page)
    assert response.status_code == 422 and "the text is empty" in response.get_data(as_text=True)
    assert _count(ConsentText) == 0

    post_form(admin, page, {"text": "I agree to marketing emails."}, page=page)
    with pytest.raises(sa.exc.DBAPIError), db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE consent_texts SET text = 'changed'")


# --- message templates --------------------------------------------------------------------

TEMPLATE_PAGE = "/dashboard/settings/templates?key=points_earned&channel=sms&locale=en"


def test_a_draft_is_previewed_then_saved_as_a_new_version(signed_in, make):
    marketer = signed_in("marketer")
    member = make.member(points=10)
    draft = "{% block body %}Bravo {{ member.name }}: +{{ points | number }} points{% endblock %}"
    form = {"source": draft, "member_id": str(member.id)}

    preview = post_form(marketer, TEMPLATE_PAGE, {**form, "action": "preview"}, page=TEMPLATE_PAGE)
    assert preview.status_code == 200 and "Bravo" in preview.get_data(as_text=True)
    assert _count(MessageTemplate) == 0  # a preview stores nothing

    saved = post_form(marketer, TEMPLATE_PAGE, {**form, "action": "save"}, page=TEMPLATE_PAGE)
    assert saved.status_code == 302
    [row] = db.session.scalars(sa.select(MessageTemplate)).all()
    assert (row.key, row.channel, row.locale, row.version) == ("points_earned", "sms", "en", 1)
    assert row.source == draft and row.created_by.startswith("user:")
    [entry] = _entries("templates.save_version")
    assert entry.after == {"key": "points_earned", "channel": "sms", "locale": "en", "version": 1,
                           "replaces_version": None}  # fmt: skip


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% block body %}Hi {{ member.name }{% endblock %}", "template error"),
        ("Hi there", "a template needs a {% block body %}"),
        ("{% block body %}Hi {{ pionts }}{% endblock %}", "unknown variables: pionts"),
    ],
)
def test_an_invalid_draft_shows_why_and_saves_nothing(signed_in, source, message):
    admin = signed_in("admin")
    response = post_form(admin, TEMPLATE_PAGE, {"source": source, "action": "save"},
                         page=TEMPLATE_PAGE)  # fmt: skip
    assert response.status_code == 422
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    assert _count(MessageTemplate) == 0 and _entries("templates.save_version") == []


def test_an_unknown_variable_can_be_saved_on_purpose(signed_in):
    admin = signed_in("admin")
    form = {"source": "{% block body %}{{ custom_code }}{% endblock %}", "action": "save",
            "allow_unknown": "on"}  # fmt: skip
    assert post_form(admin, TEMPLATE_PAGE, form, page=TEMPLATE_PAGE).status_code == 302
    assert _count(MessageTemplate) == 1


# --- two-step sign-in ---------------------------------------------------------------------


def _user() -> DashboardUser:
    db.session.expire_all()
    return db.session.scalars(sa.select(DashboardUser)).one()


def test_totp_is_turned_on_only_with_a_valid_code_and_off_only_with_one(signed_in):
    client = signed_in("analyst")
    begun = post_form(client, "/dashboard/account", {"action": "totp-begin"})
    html = begun.get_data(as_text=True)
    pending = _user().totp_pending_secret
    assert pending and pending in html and "otpauth://totp/" in html
    assert 'src="data:image/svg+xml' in html  # the QR code
    assert _user().totp_secret is None  # not asked at sign-in yet

    wrong = post_form(client, "/dashboard/account", {"action": "totp-confirm", "code": "000000"})
    assert wrong.status_code == 422 and _user().totp_secret is None
    assert _entries("user.totp_enabled") == []

    code = pyotp.TOTP(pending).now()
    right = post_form(client, "/dashboard/account", {"action": "totp-confirm", "code": code})
    assert right.status_code == 200
    user = _user()
    assert user.totp_secret == pending and user.totp_pending_secret is None
    [entry] = _entries("user.totp_enabled")
    assert entry.before["totp"] is False and entry.after["totp"] is True
    assert pending not in str(entry.after)

    again = post_form(client, "/dashboard/account", {"action": "totp-begin"})
    assert again.status_code == 422 and _user().totp_pending_secret is None  # no silent swap
    refused = post_form(client, "/dashboard/account", {"action": "totp-disable", "code": "123"})
    assert refused.status_code == 422 and _user().totp_secret == pending
    code = pyotp.TOTP(pending).now()
    post_form(client, "/dashboard/account", {"action": "totp-disable", "code": code})
    assert _user().totp_secret is None
    assert len(_entries("user.totp_disabled")) == 1


def test_the_cli_bootstrap_still_turns_totp_on_at_once(app):
    from loyalty.dashboard import users

    user = users.create_user(email="boot@example.test", name="", password="x" * 12,
                             role="admin", now=utcnow())  # fmt: skip
    uri = users.enable_totp(user)
    assert uri.startswith("otpauth://totp/") and user.totp_secret is not None


def test_the_new_settings_pages_speak_chinese(signed_in):
    admin = signed_in("admin")
    post_form(admin, "/dashboard/account", {"action": "locale", "locale": "zh_CN"})
    assert "发布新版本" in admin.get("/dashboard/settings/consent-texts").get_data(as_text=True)
    assert "新建积分规则" in admin.get("/dashboard/settings").get_data(as_text=True)
    assert "设置 TOTP 验证码" in admin.get("/dashboard/account").get_data(as_text=True)
    assert "保存为新版本" in admin.get(TEMPLATE_PAGE).get_data(as_text=True)


def test_the_demo_publishes_its_consent_texts_once(app):
    from loyalty.dashboard.demo import ensure_demo_consent_texts

    first = ensure_demo_consent_texts(utcnow())
    assert ensure_demo_consent_texts(utcnow()) == first
    assert _count(ConsentText) == 4
