"""The SVG pictures of scheduler.charts: bars, heights, colours, tooltips, summaries, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from datetime import timedelta

import pytest

from scheduler import charts
from scheduler.models import JobRun
from tests.factories import job_run
from tests.scheduler.schedule_pages import at

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The SVG as XML: it must be well-formed, whatever the database held."""
    return ET.fromstring(svg)  # noqa: S314 (the test's own output, no entities)


def runs_of(*specs: tuple[str, float | None]) -> list[JobRun]:
    """Runs newest first (as selected), each with a primary key, from (status, duration) pairs
    given oldest first."""
    runs = []
    for i, (status, duration) in enumerate(specs):
        run = job_run(
            "jobs.heartbeat", status, at("2026-03-10 02:30") + timedelta(days=i), duration
        )
        run.pk = 1000 + i
        runs.append(run)
    return runs[::-1]


def bars(svg: str) -> list[ET.Element]:
    return parse(svg).findall(f"{SVG}a")


def bar_rect(bar: ET.Element) -> ET.Element:
    (rect,) = [r for r in bar.findall(f"{SVG}rect") if r.get("class") == "bar"]
    return rect


def height(bar: ET.Element) -> float:
    return float(bar_rect(bar).get("height") or 0)


def test_every_status_has_its_own_colour_and_an_unknown_one_draws_grey() -> None:
    # "cancelled" comes with the run controls, whichever lands first.
    statuses = sorted({*JobRun.Status.values, "cancelled"})
    assert set(charts.STATUS_COLOURS) == set(statuses)
    colours = [charts.status_colour(s) for s in statuses]
    assert len(set(colours)) == len(colours)
    assert charts.UNKNOWN_COLOUR not in colours
    assert charts.status_colour("paused-by-a-plugin") == charts.UNKNOWN_COLOUR
    assert charts.status_label("timed_out") == "timed out"
    assert charts.status_label("paused_by_plugin") == "paused by plugin"


def test_strip_draws_one_linked_bar_per_run_oldest_left_at_most_its_slots() -> None:
    runs = runs_of(*[("succeeded", 1.0)] * 130)
    svg = charts.run_strip(runs, charts.PAGE_STRIP)
    drawn = bars(svg)
    assert len(drawn) == 100
    # The newest 100 of the 130, the oldest of them on the left.
    assert [b.get("href") for b in drawn] == [
        f"/admin/scheduler/jobrun/{run.pk}/change/" for run in reversed(runs[:100])
    ]
    xs = [float(bar_rect(b).get("x") or 0) for b in drawn]
    assert xs == sorted(xs) and xs[0] == 0


def test_a_short_history_is_drawn_at_the_right_end_of_the_strip() -> None:
    svg = charts.run_strip(runs_of(*[("succeeded", 1.0)] * 3), charts.LIST_STRIP)
    drawn = bars(svg)
    step = charts.LIST_STRIP.bar + charts.LIST_STRIP.gap
    assert [float(bar_rect(b).get("x") or 0) for b in drawn] == [17 * step, 18 * step, 19 * step]
    assert float(parse(svg).get("width") or 0) == 20 * step - charts.LIST_STRIP.gap


def test_bar_heights_follow_durations_with_a_floor_for_runs_without_one() -> None:
    runs = runs_of(
        ("succeeded", 10.0), ("skipped_overlap", None), ("succeeded", 40.0), ("failed", 0.001)
    )
    drawn = bars(charts.run_strip(runs, charts.PAGE_STRIP))
    heights = [height(b) for b in drawn]
    full, floor = charts.PAGE_STRIP.height, charts.PAGE_STRIP.floor
    assert heights == [full / 4, floor, full, floor]
    # Every bar stands on the same base line.
    bottoms = {float(bar_rect(b).get("y") or 0) + height(b) for b in drawn}
    assert len(bottoms) == 1


def test_no_duration_at_all_draws_every_bar_at_the_floor() -> None:
    runs = runs_of(("missed", None), ("expired", None))
    assert {height(b) for b in bars(charts.run_strip(runs, charts.LIST_STRIP))} == {
        charts.LIST_STRIP.floor
    }


def test_bars_are_coloured_by_status_and_an_unknown_status_still_draws() -> None:
    runs = runs_of(("succeeded", 1.0), ("failed", 2.0), ("cancelled", 3.0), ("paused", 1.0))
    drawn = bars(charts.run_strip(runs, charts.PAGE_STRIP))
    assert [bar_rect(b).get("fill") for b in drawn] == [
        charts.STATUS_COLOURS["succeeded"],
        charts.STATUS_COLOURS["failed"],
        charts.STATUS_COLOURS["cancelled"],
        charts.UNKNOWN_COLOUR,
    ]
    assert [b.get("data-status") for b in drawn] == ["succeeded", "failed", "cancelled", "paused"]


def test_hovering_a_bar_tells_times_in_shanghai_duration_status_and_attempt() -> None:
    run = job_run(
        "jobs.backup_database",
        "failed",
        at("2026-03-10 02:30:05"),
        125.5,
        attempt=3,
        error_type="OperationalError",
    )
    run.pk = 7
    (bar,) = bars(charts.run_strip([run], charts.PAGE_STRIP))
    assert bar.findtext(f"{SVG}title") == (
        "started 2026-03-10 02:30:05 CST\n"
        "finished 2026-03-10 02:32:10 CST\n"
        "took 2 min 6 s\n"
        "failed, attempt 3 (OperationalError)"
    )
    running = job_run("jobs.heartbeat", "running", at("2026-03-10 02:30"))
    running.pk = 8
    (bar,) = bars(charts.run_strip([running], charts.PAGE_STRIP))
    assert bar.findtext(f"{SVG}title") == "started 2026-03-10 02:30:00 CST\nrunning, attempt 1"


def test_strip_is_an_image_with_a_summary_for_screen_readers() -> None:
    runs = runs_of(*([("succeeded", 1.0)] * 97 + [("failed", 1.0)] * 3))
    root = parse(charts.run_strip(runs, charts.PAGE_STRIP))
    assert root.get("role") == "img"
    assert root.get("aria-label") == "last 100 runs: 97 succeeded, 3 failed"
    one = parse(charts.run_strip(runs[:1], charts.LIST_STRIP, "nightly"))
    assert one.get("aria-label") == "nightly: last 1 run: 1 failed"


def test_legend_names_each_colour_with_its_count() -> None:
    html = charts.status_legend(Counter({"failed": 3, "succeeded": 97, "weird": 1}))
    items = parse(f"<root>{html}</root>").findall(".//li")
    assert ["".join(li.itertext()) for li in items] == [
        "succeeded: 97",
        "failed: 3",
        "weird: 1",
    ]
    swatches = [li.find("span").get("style") for li in items]  # type: ignore[union-attr]
    assert swatches == [
        f"background:{charts.STATUS_COLOURS['succeeded']}",
        f"background:{charts.STATUS_COLOURS['failed']}",
        f"background:{charts.UNKNOWN_COLOUR}",
    ]


@pytest.mark.parametrize(
    "evil",
    [
        '<script>alert("x")</script>',
        '"><image href=x onerror=alert(1)>',
        "</title><a href='javascript:alert(1)'>",
    ],
)
def test_names_and_errors_from_the_database_are_escaped(evil: str) -> None:
    run = job_run("jobs.heartbeat", "failed", at("2026-03-10 02:30"), 1.0, error_type=evil)
    run.pk = 9
    svg = charts.run_strip([run], charts.LIST_STRIP, evil)
    assert evil not in svg
    root = parse(svg)  # still well-formed: nothing broke out of its attribute or element
    assert root.get("aria-label") == f"{evil}: last 1 run: 1 failed"
    (bar,) = root.findall(f"{SVG}a")
    assert (bar.findtext(f"{SVG}title") or "").endswith(f"failed, attempt 1 ({evil})")
    assert [e.tag for e in root.iter()] == [
        f"{SVG}svg",
        f"{SVG}line",
        f"{SVG}a",
        f"{SVG}title",
        f"{SVG}rect",
        f"{SVG}rect",
    ]
    column = charts.Column(evil, evil, [charts.Segment(1, "#000", evil)])
    chart = charts.stacked_columns([column], evil, evil)
    assert evil not in chart
    assert parse(chart).get("aria-label") == evil


def test_stacked_columns_stack_segments_to_scale_and_mark_empty_ones() -> None:
    columns = [
        charts.Column(
            "00:00",
            "hour 0",
            [charts.Segment(30, "#111", "30 succeeded"), charts.Segment(10, "#222", "10 failed")],
        ),
        charts.Column("", "hour 1", [charts.Segment(20, "#111", "20 succeeded")]),
        charts.Column("", "hour 2", [], empty_mark=True),
    ]
    root = parse(charts.stacked_columns(columns, "runs per hour", "40 runs"))
    assert root.get("aria-label") == "runs per hour"
    groups = root.findall(f"{SVG}g")
    assert [g.findtext(f"{SVG}title") for g in groups] == ["hour 0", "hour 1", "hour 2"]
    segments = [[r for r in g.findall(f"{SVG}rect") if r.get("class") == "segment"] for g in groups]
    heights = [[float(r.get("height") or 0) for r in column] for column in segments]
    full = charts.CHART_HEIGHT
    assert heights == [[full * 30 / 40, full * 10 / 40], [full * 20 / 40], []]
    # The second segment sits on the first.
    first, second = segments[0]
    assert float(second.get("y") or 0) + float(second.get("height") or 0) == float(
        first.get("y") or 0
    )
    assert [s.findtext(f"{SVG}title") for s in segments[0]] == [
        "hour 0\n30 succeeded",
        "hour 0\n10 failed",
    ]
    texts = {t.get("class"): t.text for t in root.iter(f"{SVG}text")}
    assert texts["chart-tick"] == "00:00"
    assert texts["chart-empty"] == "\N{MULTIPLICATION SIGN}"
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-scale"] == [
        "0",
        "40 runs",
    ]
