"""The results as Markdown: printed at the end and written to bench/results/latest.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.load import Measurement

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    label: str
    measurement: Measurement | None
    kind: str  # "api" or "raw"
    note: str = ""


@dataclass
class Target:
    text: str  # e.g. "earning >= 0.5 x raw"
    measured: str
    met: bool | None  # None: could not be judged


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    unit: str = "requests/s"
    phase: str = ""  # "empty" or "seeded" database

    def api(self) -> Measurement | None:
        return next((r.measurement for r in self.rows if r.kind == "api"), None)


def _ms(value: float) -> str:
    if value < 0:
        return "-"  # not a latency measurement (e.g. a bulk rate)
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


def _windows(m: Measurement) -> str:
    if not m.windows:
        return "-"
    flat = {True: " (flat)", False: " (NOT flat)", None: ""}[m.flat]
    return " / ".join(f"{w:,.0f}" for w in m.windows) + flat


def section_markdown(section: Section) -> list[str]:
    phase = f" [{section.phase} database]" if section.phase else ""
    lines = [f"### {section.title}{phase}", ""]
    if section.skipped:
        return [*lines, f"Skipped: {section.skipped}", ""]
    api = section.api()
    lines += [
        f"| measured | {section.unit} | p50 ms | p99 ms | API/raw | errors | per window |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in section.rows:
        m = row.measurement
        if m is None:
            lines.append(f"| {row.label} | - | - | - | - | {row.note or 'not run'} | - |")
            continue
        ratio = ""
        if row.kind == "raw" and api is not None and m.rps:
            ratio = f"{api.rps / m.rps:.2f}"
        errors = f"{m.errors} of {m.completed}" if m.errors else "0"
        cells = [
            row.label,
            f"{m.rps:,.0f}",
            _ms(m.p50_ms),
            _ms(m.p99_ms),
            ratio,
            errors,
            _windows(m),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for target in section.targets:
        lines.append(f"- Target: {target.text}: {target.measured} -> **{_verdict(target.met)}**")
    for note in section.notes:
        lines.append(f"- {note}")
    lines.append("")
    return lines


def document(
    facts: dict[str, str],
    settings: dict[str, str],
    sections: list[Section],
    extra: list[str],
    comparison: list[str] | None = None,
) -> str:
    lines = ["# Omniloyal benchmark", ""]
    lines += ["| machine / run | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in {**facts, **settings}.items()]
    lines.append("")
    lines += summary(sections)
    for section in sections:
        lines += section_markdown(section)
    targets = [t for s in sections for t in s.targets]
    if targets:
        lines += ["## Targets (PRODUCT.md)", "", "| target | measured | verdict |"]
        lines.append("| --- | --- | --- |")
        lines += [f"| {t.text} | {t.measured} | {_verdict(t.met)} |" for t in targets]
        lines.append("")
    lines += comparison or []
    lines += extra
    return "\n".join(lines).rstrip() + "\n"


def summary(sections: list[Section]) -> list[str]:
    """One row per scenario and database: the API closed and open loop beside its raw
    baseline (the same statements through pgbench, the first raw row of the section)."""
    rows = []
    for section in sections:
        api = section.api()
        if section.skipped or api is None or section.unit != "requests/s":
            continue
        opened = next((r for r in section.rows if r.kind == "open" and r.measurement), None)
        raws = [r for r in section.rows if r.kind == "raw" and r.measurement is not None]
        same = [r for r in raws if "same statements" in r.label or "API's" in r.label]
        raw = (same or raws)[0].measurement if raws else None
        open_cell = "-"
        if opened is not None and opened.measurement is not None:
            rate = opened.measurement.rps
            errors = f", {opened.measurement.errors} errors" if opened.measurement.errors else ""
            open_cell = f"{_ms(opened.measurement.p99_ms)} at {rate:,.0f}/s{errors}"
        raw_cell = f"{raw.rps:,.0f}" if raw is not None and raw.rps else "-"
        ratio = f"{api.rps / raw.rps:.2f}" if raw is not None and raw.rps else "-"
        rows.append(
            f"| {section.key} [{section.phase or '-'}] | {api.rps:,.0f} | {_ms(api.p50_ms)} / "
            f"{_ms(api.p99_ms)} | {open_cell} | {raw_cell} | {ratio} |"
        )
    if not rows:
        return []
    return [
        "## Summary",
        "",
        "| scenario [database] | API req/s | closed loop p50 / p99 ms | open loop p99 ms "
        "(at 50 % of saturation) | raw req/s (same statements, pgbench) | API / raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]


def write(markdown: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.md"
    path.write_text(markdown)
    return path


HISTORY_RATIO = 0.9  # ISSUE-12: history costs nothing


def history_comparison(empty: list[Section], seeded: list[Section]) -> list[str]:
    """Each row's throughput on the seeded database beside the empty one, and whether each
    API run was flat (its last window at least 90 % of the first: no decay)."""
    lines = [
        "## History: the same runs on an empty and on a seeded database",
        "",
        "| scenario | measured | empty | seeded | seeded / empty | flat (empty, seeded) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    verdicts: list[Target] = []
    for before in empty:
        after = next((s for s in seeded if s.key == before.key), None)
        if after is None or before.skipped or after.skipped:
            continue
        for row, other in zip(before.rows, after.rows, strict=False):
            a, b = row.measurement, other.measurement
            if a is None or b is None or not a.rps:
                continue
            ratio = b.rps / a.rps
            flat = f"{_flat(a.flat)}, {_flat(b.flat)}"
            lines.append(
                f"| {before.key} | {row.label} | {a.rps:,.0f} | {b.rps:,.0f} | {ratio:.2f} "
                f"| {flat} |"
            )
            if row.kind == "api" and before.unit == "requests/s":  # not the bulk rate
                verdicts.append(
                    Target(
                        f"{before.key}: seeded >= {HISTORY_RATIO} x empty",
                        f"{b.rps:,.0f} / {a.rps:,.0f} = {ratio:.2f}",
                        ratio >= HISTORY_RATIO,
                    )
                )
                verdicts.append(
                    Target(f"{before.key}: flat on both databases", flat, _both(a.flat, b.flat))
                )
    lines.append("")
    lines += [f"- Target: {t.text}: {t.measured} -> **{_verdict(t.met)}**" for t in verdicts]
    return [*lines, ""]


def _flat(flat: bool | None) -> str:
    return {True: "flat", False: "NOT flat", None: "n/a"}[flat]


def _both(a: bool | None, b: bool | None) -> bool | None:
    if a is None or b is None:
        return None
    return a and b
