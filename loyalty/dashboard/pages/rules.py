"""Settings: earning rules, created, edited, switched on and off with the API's schemas and
operations (RuleCreateSchema / RuleUpdateSchema, earning.operations.create_rule /
update_rule): the form is turned into the API's JSON body, nothing more."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.pages.offers import _errors
from loyalty.dashboard.roles import Permission, allows

INT_FIELDS = ("points", "per_minor", "multiplier_pct", "bonus_points")
NULLABLE_INT_FIELDS = ("min_spend_minor", "max_points")
LIST_FIELDS = ("store_ids", "regions", "categories", "skus")  # comma-separated on the form
NULLABLE_TEXT_FIELDS = ("currency", "activity_kind")
TIME_FIELDS = ("starts_at", "ends_at")  # datetime-local, in UTC like every dashboard time


def _int(value: str) -> Any:
    # A non-number goes to the schema as it is, which names the field ("Not a valid integer").
    return int(value) if value.lstrip("-").isdigit() and len(value) < 19 else value


def rule_body(form: MultiDict, *, editing: bool) -> dict[str, Any]:
    """The API body for the form. Creating: blank fields are left out (the defaults apply).
    Editing: every field is sent, a blank optional one as null (so it can be cleared)."""
    body: dict[str, Any] = {}
    for name in ("name", "kind"):
        value = form.get(name, "").strip()
        if value or not editing:
            body[name] = value
    body["active"] = form.get("active") == "on"
    for name in INT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = _int(value)
    for name in NULLABLE_INT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = _int(value)
        elif editing:
            body[name] = None
    for name in NULLABLE_TEXT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = value.upper() if name == "currency" else value
        elif editing:
            body[name] = None
    for name in TIME_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = value if value[-1] in "Zz" or "+" in value[10:] else value + "+00:00"
        elif editing:
            body[name] = None
    channels = form.getlist("channels")
    if channels:
        body["channels"] = channels
    elif editing:
        body["channels"] = None
    for name in LIST_FIELDS:
        items = [item.strip() for item in form.get(name, "").split(",") if item.strip()]
        if items:
            body[name] = items
        elif editing:
            body[name] = None
    return body


def _choices() -> dict[str, Any]:
    from loyalty.earning.models import ActivityKind, RuleKind
    from loyalty.stores.models import Channel

    return {
        "kinds": [k.value for k in RuleKind],
        "activity_kinds": [k.value for k in ActivityKind],
        "channels": [c.value for c in Channel],
    }


def _form_of(rule: Any) -> dict[str, Any]:
    """A rule as the form shows it."""
    values: dict[str, Any] = {
        name: getattr(rule, name)
        for name in (
            "name",
            "kind",
            "active",
            "currency",
            "activity_kind",
            *INT_FIELDS,
            *NULLABLE_INT_FIELDS,
        )
    }
    values["channels"] = list(rule.channels or [])
    for name in LIST_FIELDS:
        values[name] = ", ".join(getattr(rule, name) or [])
    for name in TIME_FIELDS:
        moment = getattr(rule, name)
        values[name] = moment.strftime("%Y-%m-%dT%H:%M") if moment else ""
    return values


def _form_values(form: MultiDict) -> dict[str, Any]:
    """What was typed, to show again with the error."""
    values: dict[str, Any] = {key: form.get(key, "") for key in form if key != "csrf_token"}
    values["channels"] = form.getlist("channels")
    values["active"] = form.get("active") == "on"
    return values


@bp.route("/settings/rules/new", methods=["GET", "POST"])
@bp.route("/settings/rules/<int:rule_id>", methods=["GET", "POST"])
@needs(Permission.VIEW)
def rule_form(rule_id: int | None = None) -> Any:
    from loyalty.earning import operations
    from loyalty.earning.schemas import RuleCreateSchema, RuleUpdateSchema
    from loyalty.errors import NotFound

    if request.method == "POST" and not allows(current_user.role, Permission.SETTINGS_WRITE):
        abort(403)
    try:
        rule = operations.get_rule(rule_id) if rule_id is not None else None
    except NotFound:
        abort(404)
    if request.method == "POST":
        now = utcnow()
        try:
            if rule is None:
                data = RuleCreateSchema().load(rule_body(request.form, editing=False))
                created = change(
                    "earning_rules.create",
                    lambda: operations.create_rule(data, now=now),
                    target_type="earning_rule",
                    after_target=lambda r: r.id,
                )
                flash(_("Earning rule %(name)s created.", name=created.name), "ok")
            else:
                data = RuleUpdateSchema().load(rule_body(request.form, editing=True))
                target = rule.id
                change("earning_rules.update",
                       lambda: operations.update_rule(target, data, now=now),
                       target_type="earning_rule", target_id=target)  # fmt: skip
                flash(_("Earning rule saved."), "ok")
            return redirect(url_for("dashboard.settings") + "#rule")
        except ValidationError as error:
            flash(_errors(error), "error")
        except Refused:
            pass  # the operation's reason was flashed
        values = _form_values(request.form)
        return render("rule.html", rule=rule, values=values, **_choices()), 422
    values = _form_of(rule) if rule is not None else {"active": True, "per_minor": 100}
    return render("rule.html", rule=rule, values=values, **_choices())


def switch_rule(rule_id: int, active: bool) -> None:
    """Activate or deactivate (the API's PATCH with `active`; a deactivated rule stays)."""
    from loyalty.earning import operations

    now = utcnow()
    change("earning_rules.activate" if active else "earning_rules.deactivate",
           lambda: operations.update_rule(rule_id, {"active": active}, now=now),
           target_type="earning_rule", target_id=rule_id)  # fmt: skip
