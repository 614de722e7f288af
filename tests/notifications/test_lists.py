"""Every notifications list is the API's one envelope, paged by `limit` and `cursor`: paging
with `limit=1` visits each item once, in the list's order, and ends with a null cursor."""

from __future__ import annotations

from flask.testing import FlaskClient

from loyalty.auth import scopes
from tests.factories import Factories, error_fields, idem
from tests.notifications.test_push_subscriptions import browser_json


def walk(client: FlaskClient, url: str, headers: dict[str, str]) -> list[dict]:
    """Every item of a list, one page (of one item) at a time."""
    items: list[dict] = []
    cursor = None
    while True:
        sep = "&" if "?" in url else "?"
        page = client.get(
            f"{url}{sep}limit=1" + (f"&cursor={cursor}" if cursor else ""), headers=headers
        )
        assert page.status_code == 200, page.json
        assert set(page.json) == {"items", "next_cursor"}
        assert len(page.json["items"]) <= 1
        items += page.json["items"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            return items
        assert len(items) < 500, "the cursor never ends"


def test_template_versions_page_newest_first(client: FlaskClient, make: Factories) -> None:
    admin = make.api_key(scopes.ADMIN)
    for n in range(3):
        created = client.post(
            "/v1/notifications/templates",
            json={"key": "points_earned", "channel": "sms", "locale": "en",
                  "source": f"{{% block body %}}v{n}{{% endblock %}}"},
            headers=idem(admin),
        )  # fmt: skip
        assert created.status_code == 201, created.json

    versions = walk(client, "/v1/notifications/templates/points_earned/sms/en/versions", admin)

    assert [v["version"] for v in versions] == [3, 2, 1]


def test_the_template_list_pages_through_every_template_once(
    client: FlaskClient, make: Factories
) -> None:
    admin = make.api_key(scopes.ADMIN)
    whole = client.get("/v1/notifications/templates?limit=200", headers=admin).json

    paged = walk(client, "/v1/notifications/templates", admin)

    assert whole["next_cursor"] is None and paged == whole["items"]
    assert len(paged) > 1


def test_push_subscriptions_page_newest_first(client: FlaskClient, make: Factories) -> None:
    token = make.member_token(make.member().id)
    ids = [
        client.post(
            "/v1/me/push-subscriptions",
            json=browser_json(f"https://fcm.googleapis.com/fcm/send/d{n}"),
            headers=idem(token),
        ).json["id"]
        for n in range(3)
    ]

    listed = walk(client, "/v1/me/push-subscriptions", token)

    assert [s["id"] for s in listed] == ids[::-1]


def test_webhook_subscriptions_page_oldest_first(client: FlaskClient, make: Factories) -> None:
    admin = make.api_key(scopes.ADMIN)
    ids = [
        client.post(
            "/v1/webhooks",
            json={"url": f"https://example.com/hook{n}", "topics": ["points.earned"]},
            headers=idem(admin),
        ).json["id"]
        for n in range(3)
    ]

    assert [s["id"] for s in walk(client, "/v1/webhooks", admin)] == ids


def test_a_cursor_that_no_list_returned_is_a_422_naming_it(
    client: FlaskClient, make: Factories
) -> None:
    admin = make.api_key(scopes.ADMIN)
    member = make.member()
    for url in (
        "/v1/webhooks",
        f"/v1/members/{member.id}/messages",
        f"/v1/members/{member.id}/consent-history",
        "/v1/notifications/recorded",
        "/v1/notifications/templates/points_earned/sms/en/versions",
    ):
        response = client.get(f"{url}?cursor=x1", headers=admin)
        assert response.status_code == 422, url
        assert list(error_fields(response.json)) == ["cursor"], url
