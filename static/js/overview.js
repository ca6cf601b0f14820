// The Overview's live part. htmx polls /overview/live/ (hx-swap="none"); this script merges the
// answer row by row: a row, the timeline or the table body that holds the keyboard focus is
// never replaced (the focused element stays the same element), it waits for the next poll.
// The top bar's "Pause live updates" stops the polling; the status says how old the figures are.
(function () {
  "use strict";

  // the pause of every live part (static/js/app.js): one toggle, one key
  function paused() {
    try { return window.localStorage.getItem("live-updates-paused") === "1"; } catch (e) { return false; }
  }

  function poller() { return document.getElementById("overview-poll"); }

  function holdsFocus(element) {
    var active = document.activeElement;
    return !!(element && active && active !== document.body && element.contains(active));
  }

  function timeOf(iso) {
    var when = new Date(iso);
    return isNaN(when) ? iso : when.toISOString().slice(11, 19) + " UTC";
  }

  function status(text) {
    var el = document.getElementById("overview-updated");
    if (el) el.textContent = text;
  }

  function readAt() {
    var live = document.getElementById("overview-live");
    return live ? live.getAttribute("data-read-at") : "";
  }

  function swapRows(fresh) {
    var oldBody = document.querySelector("#overview-rows tbody");
    var newBody = fresh.querySelector("#overview-rows tbody");
    if (!oldBody || !newBody) return false;
    var oldIds = Array.prototype.map.call(oldBody.rows, function (r) { return r.id; }).join(" ");
    var newIds = Array.prototype.map.call(newBody.rows, function (r) { return r.id; }).join(" ");
    if (oldIds !== newIds) return false; // rows came or went: the whole part is replaced
    var kept = 0;
    Array.prototype.forEach.call(newBody.rows, function (row) {
      var old = document.getElementById(row.id);
      if (holdsFocus(old)) { kept += 1; return; }
      old.replaceWith(document.importNode(row, true));
    });
    return kept;
  }

  function merge(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var live = document.getElementById("overview-live");
    var next = fresh.getElementById("overview-live");
    if (!live || !next) return;
    var kept = swapRows(fresh);
    if (kept === false) {
      if (holdsFocus(live)) { status("Figures as of " + timeOf(readAt()) + "; not refreshed while you are in the table."); return; }
      live.replaceWith(document.importNode(next, true));
    } else {
      var timeline = document.getElementById("overview-timeline");
      var newTimeline = fresh.getElementById("overview-timeline");
      if (timeline && newTimeline && !holdsFocus(timeline)) {
        timeline.replaceWith(document.importNode(newTimeline, true));
      }
      live.setAttribute("data-read-at", next.getAttribute("data-read-at"));
    }
    status("Figures as of " + timeOf(readAt()) + (kept ? "; the row you are on refreshes when you leave it." : "."));
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target === poller() && (paused() || document.hidden)) event.preventDefault();
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.target !== poller()) return;
    var xhr = event.detail.xhr;
    if (event.detail.successful && xhr) merge(xhr.responseText);
    else status("Could not refresh: figures as of " + timeOf(readAt()) + ".");
  });
  // "Pause live updates" is the page's one toggle in the top bar (static/js/app.js, remembered
  // in localStorage); once clicked here the figures say since when, and a resume refreshes now.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("#live-toggle") : null;
    if (!button) return;
    var said = paused() ? "Live updates paused: figures as of " + timeOf(readAt()) + "." : "Live updates resumed.";
    status(said);
    var announce = document.getElementById("overview-announce");
    if (announce) announce.textContent = said;
    if (!paused() && window.htmx && poller()) window.htmx.trigger(poller(), "overview-refresh");
  });
})();
