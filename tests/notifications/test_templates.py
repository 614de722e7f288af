"""Templates: sandboxed Jinja2, Babel formatting per locale and timezone, locale fallback,
SMS segment counting (GSM-7 vs UCS-2)."""

from __future__ import annotations

import pytest

from loyalty.errors import InvalidInput
from notifications import templates
from notifications.providers.base import Channel
from notifications.templates import ResolvedTemplate, render, sms_segments


def rendered(source: str, locale: str = "en", timezone: str = "UTC", **variables):
    resolved = ResolvedTemplate("t", Channel.EMAIL, locale, 1, source)
    return render(resolved, variables, locale=locale, timezone=timezone)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # an extension character takes two septets
        ("€" * 81, 2),
        ("积" * 70, 1),  # UCS-2: 70 a message
        ("积" * 71, 2),  # 67 a part once split
        ("积" * 134, 2),
        ("积" * 135, 3),
        ("a" * 159 + "é", 1),  # é is in the GSM alphabet
        ("a" * 69 + "ę", 1),  # ę is not: the whole message becomes UCS-2
        ("a" * 70 + "ę", 2),
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_sms_segments(text, segments):
    assert sms_segments(text) == segments


def test_numbers_money_and_dates_follow_the_members_locale_and_timezone():
    source = (
        "{% block subject %}s{% endblock %}{% block body %}{{ n | number }} | "
        "{{ m | money('EUR') }} | {{ m | money('JPY') }} | {{ d | date }} | "
        "{{ d | datetime('short') }}{% endblock %}"
    )
    when = "2026-12-31T23:30:00+00:00"
    de = rendered(source, "de", "Europe/Berlin", n=1234567, m=123456, d=when).body
    assert de == "1.234.567 | 1.234,56\xa0€ | 123.456\xa0¥ | 01.01.2027 | 01.01.27, 00:30"
    zh = rendered(source, "zh-CN", "Asia/Shanghai", n=1234567, m=123456, d=when).body
    assert zh.startswith("1,234,567 | €1,234.56 | JP¥123,456 | 2027年1月1日")


def test_html_is_autoescaped_and_text_is_not():
    source = (
        "{% block subject %}Hi {{ name }}{% endblock %}{% block body %}{{ name }}{% endblock %}"
        "{% block html %}<p>{{ name }}</p>{% endblock %}"
    )
    result = rendered(source, name="<b>Tom & Jerry</b>")
    assert result.body == "<b>Tom & Jerry</b>"
    assert result.html == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_reaching_into_python(attack):
    with pytest.raises(InvalidInput):
        rendered("{% block subject %}{% endblock %}{% block body %}" + attack + "{% endblock %}",
                 member={})  # fmt: skip


def test_underscore_attributes_render_as_nothing():
    body = rendered("{% block subject %}{% endblock %}{% block body %}[{{ member.__class__ }}]"
                    "{% endblock %}", member={}).body  # fmt: skip
    assert body == "[]"


def test_locales_fall_back_to_the_language_then_english():
    assert templates.locale_chain("zh-CN") == ["zh-CN", "zh", "en"]
    assert templates.locale_chain(None) == ["en"]
    assert templates.resolve("points_earned", Channel.SMS, "zh-CN").locale == "zh-CN"
    assert templates.resolve("points_earned", Channel.SMS, "fr-FR").locale == "en"


def test_every_shipped_default_compiles_in_both_languages():
    shipped = templates.shipped_defaults()
    keys = {d["key"] for d in shipped}
    assert keys >= {"points_earned", "points_expiring", "tier_changed", "coupon_issued",
                    "reward_ready", "login_code"}  # fmt: skip
    for default in shipped:
        source = templates.default_path(default["key"], Channel(default["channel"]),
                                        default["locale"]).read_text()  # fmt: skip
        templates.check_source(source, Channel(default["channel"]))
    for key in keys:
        locales = {d["locale"] for d in shipped if d["key"] == key}
        assert locales == {"en", "zh-CN"}, key


def test_filters_given_something_else_show_it_instead_of_failing():
    body = rendered("{% block body %}{{ p | number }} {{ m | money('XXQ') }} {{ m2 | money }}"
                    "{% endblock %}", p="many", m=5, m2="lots").body  # fmt: skip
    assert body == "many XXQ0.05 lots"  # Babel shows an unknown code as it is


def test_a_template_failing_on_its_data_is_an_invalid_input_not_a_crash():
    with pytest.raises(InvalidInput):
        rendered("{% block body %}{{ points + 'x' }}{% endblock %}", points=3)


class TestMarketingOptOut:
    """Marketing says how to stop it: an SMS names Twilio's STOP keyword, a mail shows the
    unsubscribe link in its text and HTML (beside the List-Unsubscribe header)."""

    URL = "https://loyalty.example.com/notifications/unsubscribe/t0ken"

    def sms(self, body: str, locale: str = "en") -> templates.Rendered:
        plain = templates.Rendered(None, body, None, sms_segments(body))
        return templates.with_opt_out(plain, Channel.SMS, locale, None)

    def test_an_sms_gets_reply_stop_in_the_members_language_counted_in_its_segments(self):
        english = self.sms("a" * 140)
        assert english.body == "a" * 140 + " Reply STOP to opt out."
        assert english.sms_segments == 2  # 163 characters: the line is what splits it
        chinese = self.sms("积" * 63, "zh-CN")
        assert chinese.body == "积" * 63 + "回复STOP退订"
        assert chinese.sms_segments == 2  # 71 UCS-2 characters: 70 a message, 67 a part

    def test_a_template_that_words_its_own_opt_out_is_left_alone(self):
        assert self.sms("Offer! Text STOP to end.").body == "Offer! Text STOP to end."
        assert self.sms("Don't stop now").body.endswith("Reply STOP to opt out.")

    def test_a_mail_shows_the_link_in_its_text_and_html_before_the_end_of_the_body(self):
        mail = templates.Rendered("Hi", "Hello", "<html><body><p>Hello</p></body></html>", None)
        out = templates.with_opt_out(mail, Channel.EMAIL, "zh-CN", self.URL)
        assert out.body == f"Hello\n\n退订：{self.URL}"  # noqa: RUF001
        assert (
            out.html
            == f'<html><body><p>Hello</p><p><a href="{self.URL}">退订</a></p></body></html>'
        )
        assert templates.with_opt_out(out, Channel.EMAIL, "zh-CN", self.URL) == out

    def test_push_and_mail_without_a_link_are_unchanged(self):
        push = templates.Rendered("Offer", "50% off", None, None)
        assert templates.with_opt_out(push, Channel.PUSH, "en", self.URL) == push
        mail = templates.Rendered("Offer", "50% off", None, None)
        assert templates.with_opt_out(mail, Channel.EMAIL, "en", None) == mail
