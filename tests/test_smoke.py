from tests.factories import idem


def test_health_and_readiness(app, client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    # The SQLite run uses the in-process queue, the PostgreSQL run a real Redis.
    queue = "embedded" if app.extensions["omniloyal.settings"].redis_url is None else "ok"
    assert ready.json["checks"] == {"database": "ok", "redis": queue}


def test_member_sees_own_balance(client, make):
    member = make.member(points=120)
    response = client.get("/v1/me/balance", headers=make.member_token(member.id))
    assert response.status_code == 200
    assert response.json["balance"] == 120
    assert response.json["available"] == 120


def test_hold_then_capture(client, make):
    member = make.member(points=500)
    headers = make.api_key()
    hold = client.post(
        f"/v1/members/{member.id}/holds", json={"points": 200}, headers=idem(headers)
    )
    assert hold.status_code == 201, hold.json
    balance = client.get(f"/v1/members/{member.id}/balance", headers=headers).json
    assert balance["available"] == 300 and balance["held"] == 200
    captured = client.post(
        f"/v1/holds/{hold.json['id']}/capture", json={"points": 150}, headers=idem(headers)
    )
    assert captured.status_code == 200, captured.json
    balance = client.get(f"/v1/members/{member.id}/balance", headers=headers).json
    assert balance == {
        "member_id": member.id,
        "balance": 350,
        "available": 350,
        "pending": 0,
        "held": 0,
        "debt": 0,
    }
