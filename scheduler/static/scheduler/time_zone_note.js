// Every admin page: next to a date or time field, Django warns "Note: You are 8 hours behind
// server time" when the browser's zone differs. Nightshift's times are always the server's zone
// (Asia/Shanghai): say that instead, next to every such field, whatever the browser's zone.
// Django's "Now" and "Today" shortcuts keep giving the server's time.
"use strict";
(function () {
    const zone = document.currentScript.dataset.timeZone;
    document.addEventListener("DOMContentLoaded", function () {
        if (typeof DateTimeShortcuts === "undefined" || !zone) {
            return;  // no date or time field on this page
        }
        DateTimeShortcuts.addTimezoneWarning = function (input) {
            const box = input.parentNode;
            if (box.querySelector(".timezonewarning")) {
                return;  // a date and a time field share their box: one note
            }
            const note = document.createElement("div");
            note.classList.add("help", "timezonewarning");
            note.textContent = "Times are " + zone + ".";
            box.appendChild(note);
        };
    });
})();
