"""Pictures of run history, drawn on the server as SVG: no script, no library, no CDN.

- `run_strip`: one bar per run, oldest on the left; height = duration (relative to the longest
  in the strip, with a floor so that runs without a duration still show), colour = status, a
  tooltip (SVG <title>) with the times, and a link to the run. The schedule page draws 100, the
  schedule list 20.
- `stacked_columns`: columns of coloured segments with a few x labels and a y scale, for the
  health page (runs per hour by status; backup sizes per day).
- `legend`: the colours in words with their counts, the pictures' text alternative.

Every status has its colour here, and only here (`STATUS_COLOURS`); an unknown status draws in
`UNKNOWN_COLOUR`. Everything that comes from the database is escaped (format_html).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from scheduler.models import JobRun
from scheduler.presentation import human_duration

# Okabe-Ito's colour-blind-safe hues first (succeeded and failed differ for every colour vision),
# then darker and greyer ones; each at least 3:1 against the admin's white.
STATUS_COLOURS: dict[str, str] = {
    JobRun.Status.SUCCEEDED: "#009e73",
    JobRun.Status.FAILED: "#d55e00",
    JobRun.Status.TIMED_OUT: "#b2458c",
    JobRun.Status.LOST: "#3d2b7a",
    JobRun.Status.RUNNING: "#0072b2",
    JobRun.Status.RETRYING: "#3a9ad9",
    JobRun.Status.SKIPPED_OVERLAP: "#c98a00",
    JobRun.Status.SKIPPED_DUPLICATE: "#8f7c00",
    JobRun.Status.EXPIRED: "#8c5a2b",
    JobRun.Status.MISSED: "#767676",
    "cancelled": "#3f3f3f",
}
UNKNOWN_COLOUR = "#a8a8a8"
AXIS_COLOUR = "#8a8a8a"


def status_colour(status: str) -> str:
    """The colour a status draws in (neutral grey for a status this module does not know)."""
    return STATUS_COLOURS.get(status, UNKNOWN_COLOUR)


_LABELS: dict[str, str] = {value: str(label) for value, label in JobRun.Status.choices}


def status_label(status: str) -> str:
    """A status in words ("timed out"), also for a status the model does not declare."""
    return _LABELS.get(status) or status.replace("_", " ")


def status_order(status: str) -> tuple[int, str]:
    """Sort key: the order of STATUS_COLOURS, then unknown statuses by name."""
    order = list(STATUS_COLOURS)
    return (order.index(status) if status in order else len(order), status)


def counts_in_words(counts: Counter[str]) -> str:
    """ "97 succeeded, 3 failed", in the order of STATUS_COLOURS."""
    ordered = sorted(counts, key=status_order)
    return ", ".join(f"{counts[s]} {status_label(s)}" for s in ordered)


def legend(entries: Iterable[tuple[str, str]]) -> SafeString:
    """An HTML legend: (colour, text) pairs, each with a swatch."""
    return format_html(
        '<ul class="chart-legend">{}</ul>',
        format_html_join(
            "",
            '<li><span class="chart-swatch" style="background:{}"></span>{}</li>',
            entries,
        ),
    )


def status_legend(counts: Counter[str]) -> SafeString:
    """The legend of the statuses counted, with their counts."""
    ordered = sorted(counts, key=status_order)
    return legend((status_colour(s), f"{status_label(s)}: {counts[s]}") for s in ordered)


def _svg(css_class: str, width: float, height: float, label: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        css_class,
        _n(width),
        _n(height),
        _n(width),
        _n(height),
        label,
        body,
    )


def _n(value: float) -> str:
    """A coordinate as SVG wants it: short, with a dot whatever the locale."""
    return f"{value:.1f}".removesuffix(".0")


# --- Run strips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StripSize:
    slots: int  # bars at most; fewer runs leave the left of the strip empty
    bar: float  # width of a bar (px)
    gap: float
    height: float  # of the tallest bar
    floor: float  # of a bar without a duration, or of the shortest one


PAGE_STRIP = StripSize(slots=100, bar=7, gap=2, height=60, floor=4)
LIST_STRIP = StripSize(slots=20, bar=4, gap=1, height=20, floor=3)


class DrawnRun(Protocol):
    """What a strip draws of a run: a JobRun, or a row of scheduler.selectors.StripRun."""

    @property
    def pk(self) -> Any: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def duration_seconds(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def error_type(self) -> str: ...


def _time_text(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(settings.TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S %Z")


def run_title(run: DrawnRun) -> str:
    """What hovering a run's bar says: its times in Asia/Shanghai, duration, status, attempt."""
    lines = [f"started {_time_text(run.started_at)}"]
    if run.finished_at is not None:
        lines.append(f"finished {_time_text(run.finished_at)}")
    if run.duration_seconds is not None:
        lines.append(f"took {human_duration(run.duration_seconds)}")
    outcome = f"{status_label(run.status)}, attempt {run.attempt}"
    if run.error_type:
        outcome += f" ({run.error_type})"
    lines.append(outcome)
    return "\n".join(lines)


def run_strip(runs: Sequence[DrawnRun], size: StripSize, subject: str = "") -> SafeString:
    """The runs (newest first, as selected) as a strip of bars, the newest on the right.

    `subject` starts the accessible summary ("nightly-report: last 20 runs: 19 succeeded, ...").
    """
    runs = list(runs[: size.slots])[::-1]
    longest = max((r.duration_seconds or 0.0 for r in runs), default=0.0)
    step = size.bar + size.gap
    width = size.slots * step - size.gap
    top = 1.0  # room for the hover outline
    # The list draws 2,000 bars a page: one reverse() per strip, and the bars as f-strings of
    # numbers and escaped text (format_html's escaping of every number tripled the page's time).
    url_before, url_after = reverse("admin:scheduler_jobrun_change", args=["RUN"]).split("RUN")
    bars = []
    for i, run in enumerate(runs):
        x = _n((size.slots - len(runs) + i) * step)
        duration = run.duration_seconds or 0.0
        height = max(size.floor, size.height * duration / longest) if longest else size.floor
        bars.append(
            f'<a href="{escape(url_before)}{int(run.pk)}{escape(url_after)}" class="run-bar" '
            f'data-status="{escape(run.status)}"><title>{escape(run_title(run))}</title>'
            # The hit area is the whole column: a short bar is as easy to point at as a tall one.
            f'<rect class="hit" x="{x}" y="0" width="{_n(size.bar)}" '
            f'height="{_n(size.height + top)}" fill="transparent"/>'
            f'<rect class="bar" x="{x}" y="{_n(top + size.height - height)}" '
            f'width="{_n(size.bar)}" height="{_n(height)}" fill="{status_colour(run.status)}"/></a>'
        )
    counts = Counter(r.status for r in runs)
    what = f"last {len(runs)} run{'s' if len(runs) != 1 else ''}: {counts_in_words(counts)}"
    body = format_html(
        '<line x1="0" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1"/>{}',
        _n(width),
        _n(top + size.height + 0.5),
        _n(top + size.height + 0.5),
        AXIS_COLOUR,
        mark_safe("".join(bars)),  # noqa: S308 (numbers, and text escaped above)
    )
    label = f"{subject}: {what}" if subject else what
    return _svg("run-strip", width, top + size.height + 1, label, body)


# --- Stacked columns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    value: float
    colour: str
    title: str


@dataclass(frozen=True)
class Column:
    tick: str  # the x label under it; "" for none
    title: str  # what hovering the column says, above its segments' titles
    segments: Sequence[Segment]
    empty_mark: bool = False  # mark the column on the axis when it has nothing (a day missed)

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


CHART_HEIGHT = 140.0
CHART_LEFT = 64.0  # room for the y scale
CHART_TOP = 8.0
CHART_BOTTOM = 20.0  # room for the x labels


def stacked_columns(
    columns: Sequence[Column], label: str, scale_text: str, column_width: float = 22
) -> SafeString:
    """Columns of stacked segments, left to right; `scale_text` labels the tallest column's
    height on the y axis (e.g. "58 runs"). An empty column leaves a gap over the x axis."""
    tallest = max((c.total for c in columns), default=0.0)
    gap = max(2.0, column_width / 6)
    width = CHART_LEFT + len(columns) * (column_width + gap)
    base = CHART_TOP + CHART_HEIGHT
    parts = [
        format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}"/>',
            _n(CHART_LEFT - 4),
            _n(width),
            _n(base + 0.5),
            _n(base + 0.5),
            AXIS_COLOUR,
        ),
        format_html(
            '<text x="{}" y="{}" text-anchor="end" class="chart-scale">0</text>',
            _n(CHART_LEFT - 8),
            _n(base + 4),
        ),
    ]
    if tallest:
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-dasharray="3 3"/>'
                '<text x="{}" y="{}" text-anchor="end" class="chart-scale">{}</text>',
                _n(CHART_LEFT - 4),
                _n(width),
                _n(CHART_TOP + 0.5),
                _n(CHART_TOP + 0.5),
                AXIS_COLOUR,
                _n(CHART_LEFT - 8),
                _n(CHART_TOP + 4),
                scale_text,
            )
        )
    for i, column in enumerate(columns):
        x = CHART_LEFT + i * (column_width + gap) + gap / 2
        y = base
        rects = []
        for segment in column.segments:
            height = CHART_HEIGHT * segment.value / tallest if tallest else 0.0
            y -= height
            rects.append(
                format_html(
                    '<rect class="segment" x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}</title></rect>",
                    _n(x),
                    _n(y),
                    _n(column_width),
                    _n(height),
                    segment.colour,
                    f"{column.title}\n{segment.title}",
                )
            )
        parts.append(
            format_html(
                '<g class="column"><title>{}</title>'
                '<rect class="hit" x="{}" y="{}" width="{}" height="{}" fill="transparent"/>'
                "{}</g>",
                column.title,
                _n(x),
                _n(CHART_TOP),
                _n(column_width),
                _n(CHART_HEIGHT),
                format_html_join("", "{}", ((r,) for r in rects)),
            )
        )
        if column.empty_mark and not column.total:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" class="chart-empty">&#215;</text>',
                    _n(x + column_width / 2),
                    _n(base - 3),
                )
            )
        if column.tick:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" class="chart-tick">{}</text>',
                    _n(x + column_width / 2),
                    _n(base + 15),
                    column.tick,
                )
            )
    body = format_html_join("", "{}", ((p,) for p in parts))
    return _svg("stacked-columns", width, base + CHART_BOTTOM, label, body)
