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

    def api(self) -> Measurement | None:
        return next((r.measurement for r in self.rows if r.kind == "api"), None)


def _ms(value: float) -> str:
    if value < 0:
        return "-"  # not a latency measurement (e.g. a bulk rate)
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


def section_markdown(section: Section) -> list[str]:
    lines = [f"### {section.title}", ""]
    if section.skipped:
        return [*lines, f"Skipped: {section.skipped}", ""]
    api = section.api()
    lines += [
        f"| measured | {section.unit} | p50 ms | p99 ms | API/raw | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in section.rows:
        m = row.measurement
        if m is None:
            lines.append(f"| {row.label} | - | - | - | - | {row.note or 'not run'} |")
            continue
        ratio = ""
        if row.kind == "raw" and api is not None and m.rps:
            ratio = f"{api.rps / m.rps:.2f}"
        errors = f"{m.errors} of {m.completed}" if m.errors else "0"
        cells = [row.label, f"{m.rps:,.0f}", _ms(m.p50_ms), _ms(m.p99_ms), ratio, errors]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for target in section.targets:
        lines.append(f"- Target: {target.text}: {target.measured} -> **{_verdict(target.met)}**")
    for note in section.notes:
        lines.append(f"- {note}")
    lines.append("")
    return lines


def document(
    facts: dict[str, str], settings: dict[str, str], sections: list[Section], extra: list[str]
) -> str:
    lines = ["# Omniloyal benchmark", ""]
    lines += ["| machine / run | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in {**facts, **settings}.items()]
    lines.append("")
    for section in sections:
        lines += section_markdown(section)
    targets = [t for s in sections for t in s.targets]
    if targets:
        lines += ["## Targets (PRODUCT.md)", "", "| target | measured | verdict |"]
        lines.append("| --- | --- | --- |")
        lines += [f"| {t.text} | {t.measured} | {_verdict(t.met)} |" for t in targets]
        lines.append("")
    lines += extra
    return "\n".join(lines).rstrip() + "\n"


def write(markdown: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.md"
    path.write_text(markdown)
    return path
