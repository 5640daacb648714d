"""Run controls in the admin: retry a run, cancel a running one, run a schedule now with other
arguments. Each is a POST with the CSRF token, allowed to holders of `scheduler.run_schedule`
(the Schedule editors), recorded in the run's row with the user (and the run it came from),
and said in a message. What they change is scheduler.services.

`RunControls` adds them to the run admin, `RunWithArguments` to the schedule admin.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast
from urllib.parse import urlencode

import redis
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from config.sentry import scrub
from scheduler import services
from scheduler.admin.forms import JobArguments
from scheduler.models import JobRun, Schedule

logger = logging.getLogger(__name__)

RUN_PERMISSION = "scheduler.run_schedule"


def may_control(request: HttpRequest) -> bool:
    return request.user.has_perm(RUN_PERMISSION)


def _run_link(run_id: int) -> SafeString:
    return format_html(
        '<a href="{}">#{}</a>', reverse("admin:scheduler_jobrun_change", args=[run_id]), run_id
    )


def _runs_of_task(task_id: str) -> str:
    return reverse("admin:scheduler_jobrun_changelist") + "?" + urlencode({"q": task_id})


def _sent(request: HttpRequest, what: str, task_id: str) -> None:
    messages.success(
        request,
        format_html(
            '{} (task {}). <a href="{}">See the run</a>.', what, task_id, _runs_of_task(task_id)
        ),
    )


def _broker_failed(request: HttpRequest, what: str, exc: Exception) -> None:
    logger.exception("%s: could not publish", what)
    messages.error(request, f"{what}: could not be sent to the broker ({type(exc).__name__})")


class RunControls:
    """The run page's Retry and Cancel (JobRunAdmin's mix-in) and the lines that say where a run
    came from: "retry of #123 by alice", "cancelled by bob", "retried as #456 by carol"."""

    admin_site: admin.AdminSite

    @admin.display(description="controls")
    def controls(self, run: JobRun) -> SafeString | str:
        lines = []
        if run.retry_of_id is not None:
            lines.append(
                format_html(
                    "retry of {} by {}", _run_link(run.retry_of_id), run.requested_by or "?"
                )
            )
        if run.status == JobRun.Status.CANCELLED:
            lines.append(format_html("cancelled by {}", run.cancelled_by or "?"))
        retries = (
            JobRun.objects.filter(retry_of=run.pk).order_by("pk").values_list("pk", "requested_by")
        )
        lines += [
            format_html("retried as {} by {}", _run_link(pk), by or "?") for pk, by in retries
        ]
        if not lines:
            return "—"
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    @admin.display(description="arguments")
    def arguments(self, run: JobRun) -> str:
        if run.args is None or run.kwargs is None:
            return "not recorded"
        # Values under keys that look like credentials are not shown (config.sentry.looks_secret).
        return f"args {json.dumps(run.args)}, kwargs {json.dumps(scrub(run.kwargs))}"

    def control_urls(self) -> list[URLPattern]:
        admin_site = self.admin_site
        return [
            path(
                "<path:object_id>/retry/",
                admin_site.admin_view(self.retry_view),
                name="scheduler_jobrun_retry",
            ),
            path(
                "<path:object_id>/cancel/",
                admin_site.admin_view(self.cancel_view),
                name="scheduler_jobrun_cancel",
            ),
        ]

    def control_context(self, request: HttpRequest, run: JobRun | None) -> dict[str, Any]:
        allowed = run is not None and may_control(request)
        return {
            "can_retry": allowed and run is not None and run.status in JobRun.RETRYABLE,
            "can_cancel": allowed and run is not None and run.status == JobRun.Status.RUNNING,
        }

    def _controlled_run(self, request: HttpRequest, object_id: str) -> JobRun:
        if not may_control(request):
            raise PermissionDenied
        run = JobRun.objects.filter(pk=_pk(object_id)).first()
        if run is None:
            raise Http404(f"no run with id {object_id!r}")
        return run

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: send the run's job again with its arguments, as a new run linked to this one."""
        run = self._controlled_run(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(_change_url(run))
        user = request.user.get_username()
        try:
            task_id = services.retry_run(run, user)
        except (LookupError, ValueError) as exc:
            messages.error(request, f"Run #{run.pk}: {exc}.")
        except Exception as exc:  # the broker is down or refused the message
            _broker_failed(request, f"Retry of run #{run.pk}", exc)
        else:
            _sent(request, f"Run #{run.pk} of {run.job} sent again as a new run by {user}", task_id)
        return HttpResponseRedirect(_change_url(run))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the confirmation page; POST: cancel the running run (revoke and terminate)."""
        run = self._controlled_run(request, object_id)
        if run.status != JobRun.Status.RUNNING:
            messages.warning(request, _already_ended(run))
            return HttpResponseRedirect(_change_url(run))
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "title": f"Cancel run #{run.pk}?",
                "run": run,
                "opts": JobRun._meta,
            }
            return TemplateResponse(
                request, "admin/scheduler/jobrun/cancel_confirmation.html", context
            )
        user = request.user.get_username()
        try:
            cancelled = services.cancel_run(run, user)
        except redis.RedisError as exc:
            logger.exception("could not cancel run %s", run.pk)
            messages.error(
                request,
                f"Run #{run.pk}: Redis did not answer ({type(exc).__name__}); nothing was changed.",
            )
        except Exception as exc:  # the broker did not take the revoke
            logger.exception("could not cancel run %s", run.pk)
            messages.error(
                request,
                f"Run #{run.pk}: the workers could not be told ({type(exc).__name__}); "
                "nothing was changed.",
            )
        else:
            if cancelled:
                messages.success(
                    request,
                    f"Run #{run.pk} of {run.job} cancelled by {user}: its worker stops it now, "
                    "and its message will not run again.",
                )
            else:
                messages.warning(request, _already_ended(run))
        return HttpResponseRedirect(_change_url(run))


def _pk(object_id: str) -> int:
    try:
        return int(unquote(object_id))
    except ValueError as exc:
        raise Http404(f"no run with id {object_id!r}") from exc


def _change_url(run: JobRun) -> str:
    return reverse("admin:scheduler_jobrun_change", args=[quote(run.pk)])


def _already_ended(run: JobRun) -> str:
    return f"Run #{run.pk} has already ended ({run.get_status_display()}); nothing was changed."


class RunArgumentsForm(JobArguments, forms.Form):
    """Other arguments for one run of a schedule, checked as the schedule form checks its own."""

    args = forms.CharField(
        label="Positional arguments",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text='A JSON list, e.g. ["a", 2]. Usually empty: jobs take keyword arguments.',
    )
    kwargs = forms.CharField(
        label="Keyword arguments",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text='A JSON object, e.g. {"day": "2026-01-31"}.',
    )

    def __init__(self, job: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self.check_arguments(self.job, data)
        return data


class RunWithArguments:
    """The schedule page's "Run with other arguments" (ScheduleAdmin's mix-in): one manual run
    with the arguments typed in the form; the schedule keeps its own."""

    admin_site: admin.AdminSite

    def arguments_urls(self) -> list[URLPattern]:
        admin_site = self.admin_site
        return [
            path(
                "<path:object_id>/run-with-arguments/",
                admin_site.admin_view(self.run_with_arguments_view),
                name="scheduler_schedule_run_with_arguments",
            )
        ]

    def run_with_arguments_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form, filled with the schedule's arguments; POST: check them, run once."""
        if not may_control(request):
            raise PermissionDenied
        schedule = Schedule.objects.filter(pk=_pk(object_id)).first()
        if schedule is None:
            raise Http404(f"no schedule with id {object_id!r}")
        page = reverse("admin:scheduler_schedule_change", args=[quote(schedule.pk)])
        if request.method == "POST":
            form = RunArgumentsForm(schedule.task, request.POST)
            if form.is_valid():
                args = json.loads(form.cleaned_data["args"])
                kwargs = json.loads(form.cleaned_data["kwargs"])
                user = request.user.get_username()
                try:
                    task_id = services.run_now(schedule, user, args=args, kwargs=kwargs)
                except (LookupError, ValueError) as exc:
                    messages.error(request, f"{schedule.name}: {exc}.")
                except Exception as exc:  # the broker is down or refused the message
                    _broker_failed(request, schedule.name, exc)
                else:
                    LogEntry.objects.log_actions(
                        cast(int, request.user.pk),
                        [schedule],
                        CHANGE,
                        f"Ran now with other arguments (task {task_id}).",
                    )
                    _sent(
                        request,
                        f"{schedule.name}: started {schedule.task} as a manual run by {user} with "
                        f"args {json.dumps(args)}, kwargs {json.dumps(scrub(kwargs))}; "
                        "the schedule keeps its own arguments",
                        task_id,
                    )
                    return HttpResponseRedirect(page)
        else:
            form = RunArgumentsForm(
                schedule.task,
                initial={"args": schedule.args or "[]", "kwargs": schedule.kwargs or "{}"},
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run {schedule.name} now with other arguments",
            "schedule": schedule,
            "form": form,
            "opts": Schedule._meta,
            "schedule_url": page,
        }
        return TemplateResponse(
            request, "admin/scheduler/schedule/run_with_arguments.html", context
        )
