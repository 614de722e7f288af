"""Chinese and English: the locale comes from the user's settings (else the browser's)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from loyalty.dashboard.setup import TRANSLATIONS
from tests.dashboard.conftest import post_form


def test_a_user_who_chose_chinese_gets_chinese_pages(signed_in):
    client = signed_in("analyst")
    assert "Overview" in client.get("/dashboard/").get_data(as_text=True)
    post_form(client, "/dashboard/account", {"action": "locale", "locale": "zh_CN"})
    html = client.get("/dashboard/").get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert "概览" in html and "每日积分" in html


def test_the_sign_in_page_follows_the_browser_language(client):
    html = client.get("/dashboard/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "登录 Omniloyal" in html.get_data(as_text=True)


def test_the_compiled_catalogue_is_the_po_file_and_translates_everything():
    folder = Path(TRANSLATIONS) / "zh_Hans_CN" / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as po, open(folder / "messages.mo", "rb") as mo:
        source, compiled = read_po(po), read_mo(mo)
    assert [m.id for m in source if m.id and not m.string] == []
    assert {m.id: m.string for m in source if m.id} == {m.id: m.string for m in compiled if m.id}, (
        "run: pybabel compile -d loyalty/dashboard/translations"
    )
