"""The demo looks alive: a running welcome series with members at different steps, some of
its messages already on their way, shown by the journeys page."""

from __future__ import annotations

import sqlalchemy as sa

from campaigns.journey_models import Journey, JourneyEntry, JourneyStepRun
from loyalty.clock import utcnow
from loyalty.dashboard.demo import seed_demo_journey
from loyalty.db import db
from loyalty.demo import seed_demo


def test_the_demo_has_a_running_journey_with_members_at_different_steps(app, signed_in):
    now = utcnow()
    seed_demo(member_count=150, now=now)
    journey_id = seed_demo_journey(now)
    db.session.commit()

    journey = db.session.get(Journey, journey_id)
    assert (journey.name, journey.status, journey.trigger) == (
        "Welcome series", "active", "member.enrolled",
    )  # fmt: skip
    at_steps = set(
        db.session.scalars(
            sa.select(JourneyEntry.step_index).where(
                JourneyEntry.journey_id == journey_id, JourneyEntry.status == "active"
            )
        )
    )
    assert len(at_steps) >= 2, at_steps
    outcomes = set(
        db.session.scalars(
            sa.select(JourneyStepRun.outcome).where(JourneyStepRun.step_type == "message")
        )
    )
    assert "queued" in outcomes  # messages on their way (the worker sends them)

    client = signed_in("marketer")
    page = client.get("/dashboard/journeys").get_data(as_text=True)
    assert "Welcome series" in page and "step " in page
