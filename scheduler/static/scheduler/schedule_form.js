// The schedule change page: shows only the fields of the chosen schedule kind, the picked job's
// description and defaults, and a live preview of the next five fire times (from the server).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("schedule_form");
    const preview = document.getElementById("schedule-preview");
    if (!form || !preview || !form.querySelector("input[name=kind]")) {
        return;  // not the form, or a read-only view of it
    }
    const KIND_ROWS = {
        crontab: ["minute", "timezone"],
        interval: ["interval"],
        solar: ["solar"],
        clocked: ["clocked"],
    };
    const SENT = [
        "kind", "minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone",
        "interval", "solar", "clocked", "one_off",
        "start_time_0", "start_time_1", "expires_0", "expires_1",
    ];
    const jobsElement = document.getElementById("schedule-jobs");
    const jobs = jobsElement ? JSON.parse(jobsElement.textContent) : {};

    function kind() {
        const checked = form.querySelector("input[name=kind]:checked");
        return checked ? checked.value : "crontab";
    }

    function row(fieldName) {
        return form.querySelector(".form-row.field-" + fieldName);
    }

    function showKind() {
        const chosen = kind();
        Object.entries(KIND_ROWS).forEach(function ([name, fields]) {
            fields.forEach(function (field) {
                const element = row(field);
                if (!element) {
                    return;
                }
                element.hidden = name !== chosen;
                // A hidden select keeps no value: the server accepts exactly one kind.
                const select = element.querySelector("select[name=" + field + "]");
                if (select && name !== chosen && field !== "timezone") {
                    select.value = "";
                }
            });
        });
    }

    function showJob() {
        const select = form.querySelector("select[name=task]");
        if (!select) {
            return;
        }
        const job = jobs[select.value];
        const description = document.getElementById("job-description");
        if (description) {
            description.textContent = job
                ? job.description + " Arguments: " + job.parameters
                : "—";
        }
        form.querySelectorAll(".job-default").forEach(function (span) {
            span.textContent = job ? job.defaults[span.dataset.policy] : "pick a job";
        });
    }

    function render(data) {
        const list = preview.querySelector(".preview-times");
        const errors = preview.querySelector(".preview-errors");
        const note = preview.querySelector(".preview-note");
        list.replaceChildren();
        errors.textContent = "";
        if (data.ok) {
            note.textContent = data.description;
            if (data.display.length === 0) {
                errors.textContent = "It would not run again.";
            }
            data.display.forEach(function (text) {
                const item = document.createElement("li");
                item.textContent = text;
                list.appendChild(item);
            });
        } else {
            note.textContent = "";
            const messages = [];
            Object.values(data.errors || {}).forEach(function (fieldErrors) {
                fieldErrors.forEach(function (message) {
                    messages.push(message);
                });
            });
            errors.textContent = messages.join(" ") || "Cannot preview this schedule.";
        }
    }

    let timer = null;
    let latest = 0;
    function refresh() {
        clearTimeout(timer);
        timer = setTimeout(function () {
            const params = new URLSearchParams();
            SENT.forEach(function (name) {
                const input = form.querySelector("[name=" + name + "]");
                if (!input) {
                    return;
                }
                if (input.type === "radio") {
                    params.set(name, kind());
                } else if (input.type === "checkbox") {
                    if (input.checked) {
                        params.set(name, "on");
                    }
                } else {
                    params.set(name, input.value);
                }
            });
            const request = ++latest;
            preview.classList.add("loading");
            fetch(preview.dataset.url + "?" + params.toString(), {
                credentials: "same-origin",
                headers: {Accept: "application/json"},
            })
                .then(function (response) {
                    return response.json();
                })
                .then(function (data) {
                    if (request === latest) {
                        render(data);
                    }
                })
                .catch(function () {
                    if (request === latest) {
                        render({ok: false, errors: {"": ["The preview is not available."]}});
                    }
                })
                .finally(function () {
                    preview.classList.remove("loading");
                });
        }, 300);
    }

    form.addEventListener("change", function (event) {
        if (event.target.name === "kind") {
            showKind();
        }
        if (event.target.name === "task") {
            showJob();
        }
        refresh();
    });
    form.addEventListener("input", refresh);
    showKind();
    if (!preview.dataset.saved) {
        refresh();  // a new schedule: nothing computed by the server yet
    }
});
