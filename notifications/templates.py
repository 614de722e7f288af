"""Message templates: Jinja2 in a sandbox, per (key, channel, locale), versioned.

A template is one Jinja2 source with blocks: `subject` (email subject, push title),
`body` (SMS text, plain-text email part, push body) and, for email, `html` (rendered with
autoescaping). Where it comes from, for a key, channel and the member's locale:

1. the highest stored version (`message_templates`, managed over the admin API), else
2. the default shipped in `templates/notifications/<key>.<channel>.<locale>.j2` (version 0),

trying the locale (`zh-CN`), then its language (`zh`), then `en`. The message records the
version and locale it was rendered from.

Templates are written by administrators, so they run in Jinja2's `SandboxedEnvironment`
(no attribute access to internals, no imports) and see plain dicts, never ORM objects.
Dates, numbers and money are formatted with Babel for the member's locale and timezone:
`{{ points | number }}`, `{{ amount_minor | money('CNY') }}`, `{{ expires_at | date }}`,
`{{ when | datetime('short') }}`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from jinja2 import TemplateError, meta, pass_context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from loyalty.db import db
from loyalty.errors import InvalidInput, NotFound
from notifications.models import MessageTemplate
from notifications.providers.base import Channel

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "notifications"
FALLBACK_LOCALE = "en"
BLOCKS = ("subject", "body", "html")
MAX_SOURCE_LENGTH = 20_000


@dataclass(frozen=True)
class ResolvedTemplate:
    key: str
    channel: Channel
    locale: str
    version: int  # 0: the shipped default
    source: str


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None
    sms_segments: int | None


# --- SMS segments ----------------------------------------------------------------------------

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")  # two septets each (escape + character)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` takes: GSM-7 (160 a message, 153 a part when split;
    extension characters count twice) when every character is in the GSM alphabet, else
    UCS-2 (70, 67 when split; characters outside the BMP count twice, as UTF-16)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / part)


# --- opt-out footers on marketing -------------------------------------------------------------

# What the providers' own rules ask of marketing: an SMS says how to opt out (Twilio's
# messaging policy and the carriers' CTIA rules: "Reply STOP"; STOP is the keyword Twilio
# itself honours, so it is the one to name), a mail shows a visible unsubscribe link in its
# body beside the List-Unsubscribe header (the mailbox providers' bulk-sender rules).
# Templates may word their own: a body that already names STOP, or already carries the
# link, is left as it is.
_OPT_OUT = {
    "en": ("Reply STOP to opt out.", "Unsubscribe: {url}", "Unsubscribe"),
    "zh": ("回复STOP退订", "退订：{url}", "退订"),  # noqa: RUF001
}
_NAMES_STOP = re.compile(r"\bSTOP\b")


def with_opt_out(
    rendered: Rendered, channel: Channel, locale: str, unsubscribe_url: str | None
) -> Rendered:
    """A marketing message's rendering with its opt-out line (SMS: reply STOP; email: the
    unsubscribe link in the text and the HTML part); push is unchanged. The SMS segment
    count includes the line."""
    language = babel_locale(locale).language
    sms_line, text_line, link_label = _OPT_OUT.get(language, _OPT_OUT[FALLBACK_LOCALE])
    if channel is Channel.SMS:
        if _NAMES_STOP.search(rendered.body):
            return rendered
        gap = "" if language == "zh" else " "
        body = f"{rendered.body}{gap}{sms_line}" if rendered.body else sms_line
        return replace(rendered, body=body, sms_segments=sms_segments(body))
    if channel is not Channel.EMAIL or not unsubscribe_url:
        return rendered
    body, html = rendered.body, rendered.html
    if unsubscribe_url not in body:
        body = f"{body}\n\n{text_line.format(url=unsubscribe_url)}".lstrip("\n")
    if html is not None and escape(unsubscribe_url) not in html:
        link = f'<p><a href="{escape(unsubscribe_url)}">{escape(link_label)}</a></p>'
        closing = html.lower().rfind("</body>")
        html = f"{html[:closing]}{link}{html[closing:]}" if closing >= 0 else f"{html}{link}"
    return replace(rendered, body=body, html=html)


# --- formatting with Babel --------------------------------------------------------------------


def babel_locale(locale: str | None) -> Locale:
    try:
        return Locale.parse((locale or FALLBACK_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(FALLBACK_LOCALE)


def _as_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
    return value


@pass_context
def _number(context: Any, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return str(value)  # a template variable that isn't a number: shown as it is
    return babel_numbers.format_decimal(value, locale=context["_locale"])


@pass_context
def _money(context: Any, minor: Any, currency: str = "EUR") -> str:
    """An amount in minor units (integer) as money in the member's locale."""
    if minor is None or minor == "":
        return ""
    if isinstance(minor, bool) or not isinstance(minor, int):
        return str(minor)
    try:
        digits = babel_numbers.get_currency_precision(str(currency))
        amount = Decimal(minor).scaleb(-digits)
        return babel_numbers.format_currency(amount, str(currency), locale=context["_locale"])
    except (ValueError, babel_numbers.UnknownCurrencyError):
        return f"{minor} {currency}"


@pass_context
def _date(context: Any, value: Any, format: str = "medium") -> str:
    value = _as_datetime(value)
    if isinstance(value, datetime):
        value = value.astimezone(babel_dates.get_timezone(context["_timezone"])).date()
    if not isinstance(value, date):
        return "" if value is None else str(value)
    return babel_dates.format_date(value, format=format, locale=context["_locale"])


@pass_context
def _datetime(context: Any, value: Any, format: str = "medium") -> str:
    value = _as_datetime(value)
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return babel_dates.format_datetime(
        value,
        format=format,
        tzinfo=babel_dates.get_timezone(context["_timezone"]),
        locale=context["_locale"],
    )


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=autoescape, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=_number, money=_money, date=_date, datetime=_datetime)
    return env


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Any:
    return (_HTML if html else _TEXT).from_string(source)


@lru_cache(maxsize=512)
def needs(source: str) -> frozenset[str]:
    """The variables a template reads (so the pipeline loads only those)."""
    return frozenset(meta.find_undeclared_variables(_TEXT.parse(source)))


def check_source(source: str, channel: Channel) -> None:
    """Refuse (422) a template that doesn't compile or lacks its body block."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise InvalidInput(f"at most {MAX_SOURCE_LENGTH} characters", field="source")
    try:
        template = _compiled(source, False)
        _compiled(source, True)
    except TemplateError as error:
        raise InvalidInput(f"template error: {error}", field="source") from None
    if "body" not in template.blocks:
        raise InvalidInput("a template needs a {% block body %}", field="source")
    if Channel(channel) is Channel.EMAIL and "subject" not in template.blocks:
        raise InvalidInput("an email template needs a {% block subject %}", field="source")


def _render_block(source: str, name: str, context: dict[str, Any], html: bool) -> str | None:
    template = _compiled(source, html)
    block = template.blocks.get(name)
    if block is None:
        return None
    ctx = template.new_context(context)
    return "".join(block(ctx)).strip()


def render(
    resolved: ResolvedTemplate, variables: dict[str, Any], *, locale: str, timezone: str
) -> Rendered:
    """Render for one member; raises InvalidInput on a template error (e.g. a sandbox
    violation), which the pipeline records as the message's failure."""
    context = {**variables, "_locale": babel_locale(locale), "_timezone": timezone or "UTC"}
    try:
        subject = _render_block(resolved.source, "subject", context, False)
        body = _render_block(resolved.source, "body", context, False) or ""
        html = None
        if resolved.channel is Channel.EMAIL:
            html = _render_block(resolved.source, "html", context, True)
    except TemplateError as error:  # SecurityError included
        raise InvalidInput(f"template {resolved.key} failed: {error}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        # e.g. `{{ points + "x" }}` or a date format Babel doesn't know: the template's
        # mistake, reported as such, never a 500 or a stuck message
        raise InvalidInput(f"template {resolved.key} failed: {type(error).__name__}") from None
    segments = sms_segments(body) if resolved.channel is Channel.SMS else None
    return Rendered(subject or None, body, html, segments)


# --- where a template comes from --------------------------------------------------------------


def locale_chain(locale: str | None) -> list[str]:
    """zh-CN -> [zh-CN, zh, en]; the fallback is English."""
    chain: list[str] = []
    if locale:
        chain.append(locale)
        language = locale.replace("_", "-").split("-")[0]
        if language != locale:
            chain.append(language)
    if FALLBACK_LOCALE not in chain:
        chain.append(FALLBACK_LOCALE)
    return chain


def default_path(key: str, channel: Channel, locale: str) -> Path:
    return TEMPLATE_DIR / f"{key}.{Channel(channel).value}.{locale}.j2"


def latest_stored(key: str, channel: Channel, locale: str) -> MessageTemplate | None:
    return db.session.scalar(
        sa.select(MessageTemplate)
        .where(
            MessageTemplate.key == key,
            MessageTemplate.channel == Channel(channel).value,
            MessageTemplate.locale == locale,
        )
        .order_by(MessageTemplate.version.desc())
        .limit(1)
    )


@lru_cache(maxsize=256)
def _read_default(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def resolve(
    key: str, channel: Channel, locale: str | None, memo: dict[Any, ResolvedTemplate] | None = None
) -> ResolvedTemplate:
    """The template to use (see the module docstring). `memo`: a dict kept for one chunk of
    messages, so a chunk looks each template up once."""
    channel = Channel(channel)
    if memo is not None:
        found = memo.get((key, channel, locale))
        if found is None:
            found = memo[(key, channel, locale)] = resolve(key, channel, locale)
        return found
    for candidate in locale_chain(locale):
        stored = latest_stored(key, channel, candidate)
        if stored is not None:
            return ResolvedTemplate(key, channel, candidate, stored.version, stored.source)
        shipped = _read_default(default_path(key, channel, candidate))
        if shipped is not None:
            return ResolvedTemplate(key, channel, candidate, 0, shipped)
    raise NotFound(f"no template {key!r} for {channel.value} in {locale_chain(locale)}")


def save_version(
    key: str, channel: Channel, locale: str, source: str, *, actor: str, now: datetime
) -> MessageTemplate:
    """Store a new version (the previous ones stay: messages name the one they used)."""
    check_source(source, channel)
    current = db.session.scalar(
        sa.select(sa.func.max(MessageTemplate.version)).where(
            MessageTemplate.key == key,
            MessageTemplate.channel == Channel(channel).value,
            MessageTemplate.locale == locale,
        )
    )
    row = MessageTemplate(
        key=key,
        channel=Channel(channel).value,
        locale=locale,
        version=(current or 0) + 1,
        source=source,
        created_at=now,
        created_by=actor[:200],
    )
    db.session.add(row)
    db.session.flush()  # two concurrent saves: the unique version refuses the second
    return row


# What every template may read whatever its key: pipeline.template_variables adds member,
# balance, tier, now and what the ids name; campaigns and journeys pass the rest.
COMMON_VARIABLES = frozenset(
    {
        "member", "balance", "tier", "now", "coupon", "offer", "store", "coupon_id",
        "offer_id", "store_id", "tier_code", "points", "campaign_id", "run", "variant",
        "multiplier_pct", "multiplier_until", "journey_id", "event_id",
    }
)  # fmt: skip


def unknown_variables(key: str, source: str) -> list[str]:
    """Variables `source` reads that no message of `key` is known to carry (they render
    empty): neither common ones nor any the key's shipped or stored versions read. An
    editor's warning; the API stores such a template as it is."""
    known = set(COMMON_VARIABLES)
    for path in TEMPLATE_DIR.glob(f"{key}.*.j2"):
        known |= needs(path.read_text(encoding="utf-8"))
    stored = db.session.scalars(
        sa.select(MessageTemplate.source).where(MessageTemplate.key == key).limit(50)
    )
    for earlier in stored:
        try:
            known |= needs(earlier)
        except TemplateError:
            continue
    return sorted(needs(source) - known)


def shipped_defaults() -> list[dict[str, str]]:
    """Every default template file: key, channel, locale."""
    found = []
    for path in sorted(TEMPLATE_DIR.glob("*.j2")):
        parts = path.name.removesuffix(".j2").split(".")
        if len(parts) == 3:
            found.append({"key": parts[0], "channel": parts[1], "locale": parts[2]})
    return found
