"""Ad hoc: time GET /v1/me/balance through the test client on PostgreSQL."""

import time


def test_measure(client, make):
    member_id = make.member(points=10).id
    headers = make.member_token(member_id)
    from loyalty.db import db

    db.session.remove()
    for _ in range(50):
        client.get("/v1/me/balance", headers=headers)
    n = 1000
    started = time.perf_counter()
    for _ in range(n):
        assert client.get("/v1/me/balance", headers=headers).status_code == 200
    elapsed = time.perf_counter() - started
    print(f"\nMEASURE me/balance {elapsed / n * 1e3:.3f} ms/request")
