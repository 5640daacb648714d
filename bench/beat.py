"""Beat at scale: n every-minute schedules against Celery's own send_task loop, in one table.

For each n (default 1,000, 10,000 and 100,000) the database holds n PeriodicTask rows
(task `bench.noop`, queue `bench`) on one shared `* * * * *` crontab in Asia/Shanghai, plus
one row on a 1-second interval (queue `first`). Three contenders, one after another:

- send_task: one producer publishing n messages in a loop (a plain Celery app, no project
  signal receivers): the baseline, seconds for n messages (best of 3 rounds).
- stock: `celery -A bench.stock_beat_app beat -S django_celery_beat.schedulers:DatabaseScheduler`,
  django-celery-beat as shipped (project receivers disconnected; its log names the class).
  Its burst is quadratic, so it runs only where ~20 s x (n/1000)^2 stays under 10 minutes.
- nightshift: `celery -A bench.beat_app beat -S django`: the Procfile's command, on the project
  app plus the `bench.noop` job (beat sends only jobs it knows, as a deploy's beat does).

Per beat: start→first dispatch (Popen to the first message of the 1-s schedule); last msg
after slot (the first whole minute after beat dispatches and `bench` is quiet, to the moment
LLEN(bench) reaches n); beat CPU over that burst (utime+stime of beat's session); RSS after it;
idle CPU per minute (every row moved to a crontab 30 minutes ahead, beat left to settle, then
CPU over --idle-seconds; the 1-s schedule keeps firing); edit→live p50/p95 (a one-off task on a
clocked time 1 s in the past saved through the ORM, to its message in `probe`); takeover, for
Nightshift only (a second beat joins, the first is SIGKILLed after 15 s; seconds until a new
message of the 1-s schedule). Waits are bounded: a cell that ran out of time says so.

Everything runs on a private redis-server on a free port and, by default, a fresh PostgreSQL
database `nightshift_bench_beat_<pid>` created on --server-url and dropped at the end. Beat
logs are kept under var/bench-beat/.

    .venv/bin/python bench/beat.py [--sizes 1000,10000,100000 | --quick]
                                   [--database-url postgres://.../an_empty_database]
                                   [--idle-seconds 60] [--edits 20] [--no-stock]

Targets (Nightshift): ratio <= 1.0 at 10,000; at 100,000 edit→live p95 <= 1 s,
start→first dispatch <= 10 s, RSS <= 500 MB, idle CPU <= 0.5 s/min; takeover <= 10 s.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.metadata
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import redis_server  # noqa: E402  (needs ROOT on the path)

CELERY = str(Path(sys.executable).parent / "celery")
DEFAULT_SIZES = "1000,10000,100000"
QUICK_SIZES = "1000,10000"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
TZ = "Asia/Shanghai"
COMMANDS = {
    "stock": [
        CELERY, "-A", "bench.stock_beat_app", "beat",
        "-S", "django_celery_beat.schedulers:DatabaseScheduler",
    ],
    "nightshift": [CELERY, "-A", "bench.beat_app", "beat", "-S", "django"],
}  # fmt: skip
CONTENDER_TIMEOUT = 600.0  # seconds: to the first dispatch, and from the slot to the last message
STOCK_SECONDS_AT_1000 = 20.0  # measured earlier; stock's burst grows with n squared
QUIET_SECONDS = 3.0  # `bench` unchanged this long before the slot is chosen
SLOT_MARGIN = 3.0  # the slot is at least this far after `bench` was emptied
SETTLE_SECONDS = 10.0
SETTLE_MAX = 120.0
EDIT_SPACING = 1.5
EDIT_TIMEOUT = 15.0
EDIT_GIVE_UP = 3  # consecutive edits that time out end the series
OVERLAP_SECONDS = 15.0
TAKEOVER_TIMEOUT = 60.0
BATCH = 5000
SEND_TASK_ROUNDS = 3

_started: list[subprocess.Popen[bytes]] = []
notes: list[str] = []


def say(message: str) -> None:
    """Progress goes to stderr; stdout holds only the header, the table and the targets."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------


def _stop_group(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group (its own session), SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    # Children that outlived their leader, or a leader that ignored SIGTERM.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        say(f"process {process.pid} did not exit after SIGKILL")


def stop_everything() -> None:
    """Stop every process this script started (idempotent; also run at exit)."""
    while _started:
        _stop_group(_started.pop(), grace=5.0)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class BeatExited(Exception):
    """The beat process ended on its own."""


class Beat:
    """A beat process in its own session, its output in a log file."""

    def __init__(self, kind: str, label: str, env: dict[str, str], log_dir: Path) -> None:
        self.kind = kind
        self.log_path = log_dir / f"{label}.log"
        with self.log_path.open("wb") as log:
            self.started = time.perf_counter()
            self.popen = subprocess.Popen(
                COMMANDS[kind],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole, spared Ctrl-C
            )
        _started.append(self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise BeatExited(
                f"{self.kind} beat exited with status {self.popen.returncode}; see {self.log_path}"
            )

    def kill(self) -> float:
        """SIGKILL the whole process group, as a crash would; the moment of the kill."""
        os.killpg(self.pid, signal.SIGKILL)
        killed = time.perf_counter()
        self.popen.wait(timeout=10)
        return killed

    def stop(self) -> None:
        _stop_group(self.popen)
        if self.popen in _started:
            _started.remove(self.popen)

    def log(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))


def _session_stats(sid: int) -> list[list[str]]:
    """The /proc/<pid>/stat fields after `(comm)` of every process in session `sid`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path("/proc", entry.name, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6: session
            found.append([entry.name, *fields])
    return found


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(beat: Beat) -> float:
    """CPU time of beat and its children so far: utime+stime (+ of reaped children)."""
    # After the pid: state, ppid, pgrp, session, ..., utime is field 14 of stat, so index 12.
    return sum(sum(int(x) for x in f[12:16]) for f in _session_stats(beat.pid)) / _TICK


def rss_mb(beat: Beat) -> float:
    """VmRSS of beat's processes (the beat process alone unless it has children), MiB."""
    total_kb = 0
    for f in _session_stats(beat.pid):
        try:
            status = Path("/proc", f[0], "status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kb += int(match.group(1)) if match else 0
    return total_kb / 1024


# --- waiting --------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], bool], timeout: float, beat: Beat | None, every: float
) -> float | None:
    """Poll until `predicate` holds: the perf_counter() moment it did, or None after timeout."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        if beat is not None:
            beat.check()
        if time.perf_counter() >= deadline:
            return None
        time.sleep(every)


def sleep_until_wall(moment: float, beat: Beat) -> None:
    """Sleep to the wall-clock `moment`, checking on beat every second."""
    while (left := moment - time.time()) > 0:
        beat.check()
        time.sleep(min(left, 1.0) if left > 0.05 else 0.001)


# --- the table ------------------------------------------------------------------------------

COLUMNS = [  # key, width, header line 1, header line 2
    ("n", 8, "n", ""),
    ("contender", 11, "contender", ""),
    ("last", 12, "last msg", "after slot"),
    ("cpu", 9, "beat CPU", "(s)"),
    ("idle", 9, "idle CPU", "/min (s)"),
    ("edit", 15, "edit→live", "p50/p95 (s)"),
    ("start", 13, "start→first", "dispatch (s)"),
    ("rss", 8, "RSS", "(MB)"),
    ("takeover", 10, "takeover", "(s)"),
    ("ratio", 10, "ratio vs", "send_task"),
]


@dataclass
class Row:
    n: int
    contender: str
    cells: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    span: str = ""  # a row that is one message, e.g. "skipped (>10 min)"

    def set(self, key: str, value: float, text: str | None = None) -> None:
        self.values[key] = value
        self.cells[key] = text if text is not None else f"{value:.2f}"

    def note(self, text: str) -> None:
        notes.append(f"n={self.n:,} {self.contender}: {text}")


def print_table(rows: list[Row]) -> None:
    def line(parts: list[str]) -> str:
        out = []
        for (key, width, _h1, _h2), text in zip(COLUMNS, parts, strict=True):
            out.append(text.ljust(width) if key == "contender" else text.rjust(width))
        return "  ".join(out).rstrip()

    print(line([c[2] for c in COLUMNS]))
    print(line([c[3] for c in COLUMNS]))
    print("-" * (sum(c[1] for c in COLUMNS) + 2 * (len(COLUMNS) - 1)))
    for row in rows:
        if row.span:
            print(f"{row.n:>{COLUMNS[0][1]},}  {row.contender:<{COLUMNS[1][1]}}  {row.span}")
            continue
        texts = [f"{row.n:,}", row.contender]
        texts += [row.cells.get(key, "-") for key, *_ in COLUMNS[2:]]
        print(line(texts))


# --- schedules ------------------------------------------------------------------------------


@dataclass
class Context:
    redis: Any  # redis.Redis
    redis_url: str
    env: dict[str, str]
    log_dir: Path
    every_minute_id: int
    args: argparse.Namespace
    classes: dict[str, str] = field(default_factory=dict)

    def llen(self, key: str) -> int:
        return int(self.redis.llen(key))


def set_up_schedules() -> int:
    """The shared every-minute crontab and the 1-s interval row; the crontab's id."""
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        PeriodicTasks,
    )

    crontab = CrontabSchedule.objects.create(
        minute="*",
        hour="*",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=ZoneInfo(TZ),
    )
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="first", task="bench.noop", interval=every_second, queue="first"
    )
    PeriodicTasks.update_changed()
    return int(crontab.pk)


def ensure_rows(n: int, crontab_id: int) -> None:
    """Exactly n `bench-…` rows on the every-minute crontab, created in batches."""
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    bench = PeriodicTask.objects.filter(name__startswith="bench-")
    bench.filter(name__gte=f"bench-{n:07d}").delete()
    have = bench.count()
    now = timezone.now()
    for start in range(have, n, BATCH):
        PeriodicTask.objects.bulk_create(
            PeriodicTask(
                name=f"bench-{i:07d}",
                task="bench.noop",
                crontab_id=crontab_id,
                queue="bench",
                last_run_at=now,
            )
            for i in range(start, min(start + BATCH, n))
        )
    PeriodicTasks.update_changed()
    if (count := bench.count()) != n:
        raise SystemExit(f"expected {n} bench schedules in the database, found {count}")


def reset_rows(crontab_id: int) -> None:
    """Every bench row due at the next minute boundary, no probes: the state a beat starts in."""
    from django.utils import timezone
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        PeriodicTask,
        PeriodicTasks,
    )

    PeriodicTask.objects.filter(name__startswith="probe-").delete()
    ClockedSchedule.objects.all().delete()
    # last_run_at = now: no catch-up dispatch of a minute that passed before beat started.
    PeriodicTask.objects.filter(name__startswith="bench-").update(
        crontab_id=crontab_id, enabled=True, last_run_at=timezone.now(), total_run_count=0
    )
    PeriodicTask.objects.filter(name="first").update(
        enabled=True, last_run_at=None, total_run_count=0
    )
    CrontabSchedule.objects.exclude(pk=crontab_id).delete()
    PeriodicTasks.update_changed()


# --- contenders -----------------------------------------------------------------------------


def send_task_row(ctx: Context, n: int) -> Row:
    """Celery's own loop: one producer, n messages to `bench`."""
    from celery import Celery

    row = Row(n, "send_task")
    app = Celery("baseline", broker=ctx.redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    times = []
    try:
        with app.producer_or_acquire() as producer:
            # Warm-up (connection, queue declaration) outside the timing, as in a running beat.
            app.send_task("bench.noop", queue="bench", producer=producer)
            for _ in range(SEND_TASK_ROUNDS):
                ctx.redis.delete("bench")
                start = time.perf_counter()
                for _ in range(n):
                    app.send_task("bench.noop", queue="bench", producer=producer)
                times.append(time.perf_counter() - start)
                if (count := ctx.llen("bench")) != n:
                    row.note(f"{count} of {n} messages reached Redis")
    finally:
        app.close()
        ctx.redis.delete("bench")
    # The best round: this machine's speed drifts, and the best is the strictest baseline.
    row.set("last", min(times))
    row.set("ratio", 1.0)
    return row


def measure_slot(ctx: Context, beat: Beat, n: int, row: Row) -> None:
    """Last message after the slot, and beat's CPU over that burst."""
    previous, quiet_since = ctx.llen("bench"), time.perf_counter()

    def quiet() -> bool:
        nonlocal previous, quiet_since
        current = ctx.llen("bench")
        if current != previous:
            previous, quiet_since = current, time.perf_counter()
        return time.perf_counter() - quiet_since >= QUIET_SECONDS

    # The slot is the first minute boundary after `bench` went quiet, at least SLOT_MARGIN
    # away: a nearer boundary is let pass (with its burst), then quiet is awaited again.
    deadline = time.perf_counter() + CONTENDER_TIMEOUT
    while True:
        if wait_until(quiet, deadline - time.perf_counter(), beat, 0.1) is None:
            row.note(f"`bench` never went quiet before the slot ({previous} messages)")
            slot = math.ceil((time.time() + SLOT_MARGIN) / 60) * 60
            break
        slot = math.ceil(time.time() / 60) * 60
        if slot - time.time() >= SLOT_MARGIN:
            break
        sleep_until_wall(slot, beat)
        quiet_since = time.perf_counter()
    if previous := ctx.llen("bench"):
        row.note(f"{previous} messages in `bench` from minutes before the measured slot, removed")
    ctx.redis.delete("bench")
    say(f"  slot at {datetime.fromtimestamp(slot):%H:%M:%S}")
    sleep_until_wall(slot, beat)
    cpu_at_slot = cpu_seconds(beat)
    if early := ctx.llen("bench"):
        row.note(f"{early} messages already in `bench` at the slot (sent early)")
    deadline = slot + CONTENDER_TIMEOUT
    while (count := ctx.llen("bench")) < n:
        beat.check()
        if time.time() > deadline:
            row.cells["last"] = "timeout"
            row.cells["cpu"] = f"{cpu_seconds(beat) - cpu_at_slot:.2f}"
            row.note(f"{count} of {n} messages {CONTENDER_TIMEOUT:.0f} s after the slot")
            return
        time.sleep(0.02)
    last = time.time() - slot
    row.set("last", last)
    row.set("cpu", cpu_seconds(beat) - cpu_at_slot)
    time.sleep(1.0)
    if (extra := ctx.llen("bench") - n) > 0:
        row.note(f"{n + extra} messages for {n} schedules within 1 s of the last (duplicates?)")


def measure_idle(ctx: Context, beat: Beat, row: Row) -> None:
    """CPU per minute with every bench row on a crontab that fires 30 minutes from now."""
    from django.utils import timezone
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    ctx.redis.delete("bench")
    later = timezone.localtime(timezone.now(), ZoneInfo(TZ)) + timedelta(minutes=30)
    idle = CrontabSchedule.objects.create(
        minute=str(later.minute),
        hour="*",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=ZoneInfo(TZ),
    )
    PeriodicTask.objects.filter(name__startswith="bench-").update(crontab_id=idle.pk)
    PeriodicTasks.update_changed()
    # Settle: the reload that change causes is not idle work. At least SETTLE_SECONDS, then
    # until a 2-s window uses under a quarter of a core.
    time.sleep(SETTLE_SECONDS)
    settle_deadline = time.perf_counter() + SETTLE_MAX
    while True:
        beat.check()
        before = cpu_seconds(beat)
        time.sleep(2.0)
        if cpu_seconds(beat) - before < 0.5 or time.perf_counter() > settle_deadline:
            break
    if time.perf_counter() > settle_deadline:
        row.note(f"beat still busy {SETTLE_SECONDS + SETTLE_MAX:.0f} s after the idle switch")
    seconds = float(ctx.args.idle_seconds)
    before = cpu_seconds(beat)
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        beat.check()
        time.sleep(min(left, 1.0))
    row.set("idle", (cpu_seconds(beat) - before) * 60 / seconds)
    if stray := ctx.llen("bench"):
        row.note(f"{stray} messages in `bench` during the idle window")


def grew(ctx: Context, key: str, than: int) -> Callable[[], bool]:
    """A predicate: the list `key` holds more than `than` messages."""
    return lambda: ctx.llen(key) > than


def measure_edits(ctx: Context, beat: Beat, row: Row) -> None:
    """Save one-off tasks due 1 s ago; seconds from save() to their message in `probe`."""
    from django.utils import timezone
    from django_celery_beat.models import ClockedSchedule, PeriodicTask

    latencies: list[float] = []
    misses = 0
    for i in range(ctx.args.edits):
        before = ctx.llen("probe")
        clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() - timedelta(seconds=1))
        PeriodicTask(
            name=f"probe-{i:03d}",
            task="bench.noop",
            clocked=clocked,
            one_off=True,
            queue="probe",
        ).save()
        saved = time.perf_counter()
        arrived = wait_until(grew(ctx, "probe", before), EDIT_TIMEOUT, beat, 0.005)
        if arrived is None:
            latencies.append(math.inf)
            misses += 1
            if misses >= EDIT_GIVE_UP:
                row.note(
                    f"edits stopped after {misses} in a row were not live within "
                    f"{EDIT_TIMEOUT:.0f} s; the {ctx.args.edits - i - 1} not tried count as such"
                )
                latencies += [math.inf] * (ctx.args.edits - i - 1)
                break
            continue
        misses = 0
        latencies.append(arrived - saved)
        time.sleep(max(0.0, saved + EDIT_SPACING - time.perf_counter()))
    if not latencies:
        return
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    row.values["edit_p50"], row.values["edit_p95"] = p50, p95

    def show(x: float) -> str:
        return "timeout" if math.isinf(x) else f"{x:.2f}"

    row.cells["edit"] = f"{show(p50)}/{show(p95)}"
    if (lost := sum(math.isinf(x) for x in latencies)) and lost < len(latencies):
        row.note(f"{lost} of {len(latencies)} edits not live within {EDIT_TIMEOUT:.0f} s")


def measure_takeover(ctx: Context, beat: Beat, n: int, row: Row) -> None:
    """A second beat joins; the first is SIGKILLed; seconds until the 1-s schedule fires again."""
    second = Beat(beat.kind, f"n{n}-{beat.kind}-second", ctx.env, ctx.log_dir)
    try:
        at_join = ctx.llen("first")
        time.sleep(OVERLAP_SECONDS)
        beat.check()
        overlap = ctx.llen("first") - at_join
        if second.popen.poll() is not None:
            row.note(f"the second beat exited during the overlap; see {second.log_path}")
        killed = beat.kill()
        time.sleep(0.05)  # anything the dead beat had already written reaches Redis first
        base = ctx.llen("first")
        arrived = wait_until(grew(ctx, "first", base), TAKEOVER_TIMEOUT, None, 0.02)
        if arrived is None:
            row.cells["takeover"] = "none"
            row.note(f"no dispatch of the 1-s schedule {TAKEOVER_TIMEOUT:.0f} s after the kill")
            return
        row.set("takeover", arrived - killed)
        if overlap > 1.5 * OVERLAP_SECONDS:
            row.cells["takeover"] += "*"
            row.note(
                f"* both beats dispatched while running together: {overlap} messages of the "
                f"1-s schedule in {OVERLAP_SECONDS:.0f} s (one beat: ~{OVERLAP_SECONDS:.0f})"
            )
    finally:
        second.stop()


def beat_row(ctx: Context, n: int, kind: str) -> Row:
    """Start one beat on n schedules and measure it; every failure becomes a cell or a note."""
    row = Row(n, kind)
    reset_rows(ctx.every_minute_id)
    ctx.redis.flushdb()  # queues, and any lease or bookkeeping a previous beat left behind
    beat = Beat(kind, f"n{n}-{kind}", ctx.env, ctx.log_dir)
    say(f"n={n:,} {kind}: beat pid {beat.pid}, log {beat.log_path}")
    try:
        first = wait_until(lambda: ctx.llen("first") >= 1, CONTENDER_TIMEOUT, beat, 0.02)
        if first is None:
            row.cells["start"] = "timeout"
            row.note(f"no dispatch of the 1-s schedule {CONTENDER_TIMEOUT:.0f} s after start")
            return row
        row.set("start", first - beat.started)
        say(f"  first dispatch after {row.values['start']:.2f} s")
        measure_slot(ctx, beat, n, row)
        say(f"  slot: last message {row.cells.get('last')} s after it")
        rss = rss_mb(beat)
        row.set("rss", rss, f"{rss:.0f}")
        measure_idle(ctx, beat, row)
        say(f"  idle: {row.cells.get('idle')} CPU s/min")
        measure_edits(ctx, beat, row)
        say(f"  edits: p50/p95 {row.cells.get('edit')} s")
        if kind == "nightshift":
            measure_takeover(ctx, beat, n, row)
            say(f"  takeover: {row.cells.get('takeover')} s")
        else:
            row.cells["takeover"] = "n/a"
    except BeatExited as exc:
        row.note(str(exc))
        for key, *_ in COLUMNS[2:]:
            row.cells.setdefault(key, "exited")
    except Exception as exc:  # a benchmark reports, it does not stop half-way
        traceback.print_exc()
        row.note(f"error: {exc!r}; see {beat.log_path}")
    finally:
        beat.stop()
        ctx.classes.setdefault(kind, scheduler_class(beat))
    return row


def scheduler_class(beat: Beat) -> str:
    """The scheduler class from the beat banner (plus the stock app's own check line)."""
    log = beat.log()
    found = re.search(r"\. scheduler -> (\S+)", log)
    text = found.group(1) if found else "unknown (no banner in the log)"
    if engine := re.search(r"\. engine -> (.*)", log):  # Nightshift's banner line
        text += f" [engine -> {engine.group(1).strip()}]"
    if check := re.search(r"bench-stock-check: (.*)", log):  # printed by bench.stock_beat_app
        text += f" [{check.group(1).strip()}]"
    return f"{text} (log: {beat.log_path})"


# --- database -------------------------------------------------------------------------------


def _with_path(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def create_database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_with_path(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_path(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_with_path(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_label() -> str:
    from django.db import connection

    connection.ensure_connection()
    if connection.vendor == "postgresql":
        version = int(connection.pg_version or 0)  # type: ignore[attr-defined]
        return f"PostgreSQL {version // 10000}.{version % 10000}"
    return connection.vendor


# --- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default=None, help=f"schedule counts (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"--sizes {QUICK_SIZES}")
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database to create tables in (default: a fresh one, dropped)",
    )
    parser.add_argument(
        "--server-url", default=DEFAULT_SERVER, help="where to create the fresh database"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--edits", type=int, default=20, help="edit→live samples per beat")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock beat")
    args = parser.parse_args()
    if args.sizes and args.quick:
        parser.error("--sizes and --quick exclude each other")
    text = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    try:
        args.sizes = sorted({int(s.replace("_", "")) for s in text.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes wants comma-separated integers, not {text!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes wants positive integers")
    if args.idle_seconds <= 0 or args.edits < 1:
        parser.error("--idle-seconds and --edits must be positive")
    return args


def print_targets(rows: list[Row]) -> None:
    ours = {row.n: row for row in rows if row.contender == "nightshift"}

    def check(label: str, n: int | None, key: str, limit: float, unit: str) -> None:
        candidates = [ours[n]] if n is not None and n in ours else []
        if n is None:
            candidates = list(ours.values())
        values = [r.values[key] for r in candidates if key in r.values]
        if not values or len(values) < len(candidates) or not candidates:
            verdict = "not measured" if not candidates else "no value (see the table)"
            print(f"  {label:40s} {verdict}")
            return
        worst = max(values)
        shown = "timeout" if math.isinf(worst) else f"{worst:.2f} {unit}"
        print(f"  {label:40s} {shown:>12s}  {'met' if worst <= limit else 'MISSED'}")

    print("Targets (Nightshift):")
    check("ratio vs send_task <= 1.0 at 10,000", 10_000, "ratio", 1.0, "x")
    check("edit→live p95 <= 1 s at 100,000", 100_000, "edit_p95", 1.0, "s")
    check("start→first dispatch <= 10 s at 100,000", 100_000, "start", 10.0, "s")
    check("RSS <= 500 MB at 100,000", 100_000, "rss", 500.0, "MB")
    check("idle CPU <= 0.5 s/min at 100,000", 100_000, "idle", 0.5, "s/min")
    check("takeover <= 10 s (worst n)", None, "takeover", 10.0, "s")


def main() -> int:
    args = parse_args()
    # Django sets the process's zone to TIME_ZONE; do it first, so every printed time agrees.
    os.environ["TZ"] = TZ
    time.tzset()
    signal.signal(signal.SIGTERM, _raise_exit)
    atexit.register(stop_everything)
    log_dir = ROOT / "var" / "bench-beat" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"logs in {log_dir}")
    created = None
    if args.database_url:
        database_url = args.database_url
    else:
        created = f"nightshift_bench_beat_{os.getpid()}"
        try:
            database_url = create_database(args.server_url, created)
        except Exception as exc:
            raise SystemExit(
                f"cannot create database {created} on {args.server_url}: {exc}"
            ) from exc
        say(f"created database {created}")
    redis_port = redis_server.free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "ENV_FILE": os.devnull,
        "DEBUG": "true",
        "SENTRY_DSN": "",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",  # the beat banner reaches the log before the beat exits
        "NO_PROXY": "127.0.0.1",
    }
    os.environ.update(env)
    rows: list[Row] = []
    try:
        redis_process = redis_server.start(
            shutil.which("redis-server") or "redis-server", redis_port, log_dir / "redis"
        )
        _started.append(redis_process)
        with (log_dir / "migrate.log").open("wb") as log:
            migrated = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        if migrated.returncode:
            raise SystemExit(f"migrate failed ({migrated.returncode}); see {log_dir}/migrate.log")
        import django

        django.setup()
        import redis
        from django_celery_beat.models import PeriodicTask

        from bench.stock_beat_app import strip_project_receivers

        strip_project_receivers()  # the baseline publishes as plain Celery
        if PeriodicTask.objects.exists():
            raise SystemExit(f"{database_url} is not empty: it already has periodic tasks")
        client = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=30)
        ctx = Context(client, redis_url, env, log_dir, set_up_schedules(), args)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        machine = f"nproc {len(os.sched_getaffinity(0))}, load average {load} at start"
        versions = ", ".join(
            f"{p} {importlib.metadata.version(p)}" for p in ("celery", "django-celery-beat")
        )
        header = (
            f"machine: {machine}; database: {database_label()}; "
            f"Redis {client.info('server')['redis_version']}; {versions}"
        )
        for n in args.sizes:
            say(f"n={n:,}: creating schedules")
            ensure_rows(n, ctx.every_minute_id)
            rows.append(send_task_row(ctx, n))
            say(f"n={n:,} send_task: {rows[-1].cells['last']} s")
            estimate = STOCK_SECONDS_AT_1000 * (n / 1000) ** 2
            if args.no_stock:
                rows.append(Row(n, "stock", span="skipped (--no-stock)"))
            elif estimate > CONTENDER_TIMEOUT:
                rows.append(Row(n, "stock", span="skipped (>10 min)"))
                notes.append(
                    f"n={n:,} stock: skipped, ~{STOCK_SECONDS_AT_1000:.0f} s x (n/1000)^2 = "
                    f"{estimate:,.0f} s expected"
                )
            else:
                rows.append(beat_row(ctx, n, "stock"))
            rows.append(beat_row(ctx, n, "nightshift"))
            base = rows[-3].values["last"] if rows[-3].contender == "send_task" else None
            for row in rows[-2:]:
                if base and "last" in row.values:
                    row.set("ratio", row.values["last"] / base)
    finally:
        stop_everything()
        if created:
            if "django.db" in sys.modules:  # Django's connections, when it was set up
                from django.db import connections

                connections.close_all()
            try:
                drop_database(args.server_url, created)
                say(f"dropped database {created}")
            except Exception as exc:
                say(f"could not drop database {created}: {exc}")
        elif rows:
            say(f"left the benchmark's rows in {args.database_url}")

    print(header)
    print_table(rows)
    print()
    for kind, text in ctx.classes.items():
        print(f"{kind} scheduler: {text}")
    for note in notes:
        print(f"note: {note}")
    print(
        "cells: seconds unless stated. send_task's 'last msg' is its loop's time for n messages"
        " (best of 3); ratio = a beat's last msg after slot / that time, at the same n (the"
        " beat's wake-up at the slot counts against it); idle CPU includes the 1-s schedule's"
        " 60 dispatches a minute; RSS sums beat's session; beats run with DEBUG=true."
    )
    print()
    print_targets(rows)
    print(f"\nbeat logs: {log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
