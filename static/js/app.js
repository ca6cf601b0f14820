// Behaviour the templates ask for with data- attributes, so pages carry no inline script and
// no on*= handlers (the Content-Security-Policy allows scripts from /static/ only).
(function () {
  "use strict";

  // <a data-history-back href="...">: go back when there is somewhere to go back to; the href
  // is the way out without history (a page opened in a new tab).
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("[data-history-back]") : null;
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });

  // ---- Live parts (htmx polling: hx-trigger="… every Ns"; or any element marked data-live) ----
  // One mechanism for every fragment that refreshes itself, so a keyboard user never loses the
  // focus to <body> (WCAG 2.4.3) and anyone can stop the movement (2.2.2):
  // * a refresh whose target holds the focus is held back, and applied the moment the focus
  //   leaves that target (the next poll would bring it anyway; applying it early keeps the view
  //   fresh);
  // * "Pause live updates" (one toggle in the top bar, remembered in localStorage) stops every
  //   poll after the first load; the page says since when it is paused.
  var PAUSE_KEY = "live-updates-paused";
  var held = new Map(); // target element -> {response, swap}
  var loadedOnce = new WeakSet();

  function isLive(elt) {
    if (!(elt instanceof Element)) return false;
    if (elt.hasAttribute("data-live")) return true;
    var trigger = elt.getAttribute("hx-trigger") || elt.getAttribute("data-hx-trigger") || "";
    return /(^|,)\s*every\s/.test(trigger);
  }

  function paused() {
    try { return window.localStorage.getItem(PAUSE_KEY) === "1"; } catch (e) { return false; }
  }

  function holdsFocus(target) {
    var active = document.activeElement;
    return !!(target && active && active !== document.body && target.contains(active));
  }

  // A paused page still loads each live part once (hx-trigger="load, every …"), then stops.
  document.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    if (!isLive(elt) || event.detail.triggeringEvent) return;
    var firstLoad = !loadedOnce.has(elt) && /(^|,)\s*load\b/.test(elt.getAttribute("hx-trigger") || "");
    loadedOnce.add(elt);
    if (paused() && !firstLoad) event.preventDefault();
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.elt || event.target;
    var target = event.detail.target;
    if (!isLive(elt) || !event.detail.shouldSwap || !holdsFocus(target)) return;
    event.detail.shouldSwap = false;
    held.set(target, {
      response: event.detail.serverResponse,
      swap: elt.getAttribute("hx-swap") || "innerHTML",
    });
    target.setAttribute("data-live-held", "");
  });

  // The focus moved: apply what was held for every part that no longer holds it. (A window
  // losing the focus keeps document.activeElement, so switching windows applies nothing.)
  document.addEventListener("focusout", function () {
    window.setTimeout(function () {
      held.forEach(function (pending, target) {
        if (holdsFocus(target)) return;
        held.delete(target);
        target.removeAttribute("data-live-held");
        if (!document.body.contains(target) || typeof window.htmx === "undefined") return;
        window.htmx.swap(target, pending.response, { swapStyle: pending.swap });
      });
    }, 0);
  });

  function setUpPauseControl() {
    var toggle = document.getElementById("live-toggle");
    var state = document.getElementById("live-toggle-state");
    if (!toggle) return;
    var live = document.querySelector('[hx-trigger*="every"], [data-hx-trigger*="every"], [data-live]');
    if (!live) return; // nothing on this page refreshes itself
    function show() {
      var on = paused();
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      if (state) state.textContent = on ? "Live updates paused" : "";
      document.documentElement.toggleAttribute("data-live-paused", on);
    }
    toggle.hidden = false;
    show();
    toggle.addEventListener("click", function () {
      try {
        if (paused()) window.localStorage.removeItem(PAUSE_KEY);
        else window.localStorage.setItem(PAUSE_KEY, "1");
      } catch (e) { /* storage refused (private mode): nothing to remember */ }
      show();
    });
  }

  // ---- Forms: after a submit the server refused, the focus goes to the first invalid field
  // (WCAG 3.3.1), which reads its errors through aria-describedby (partials/field_errors.html).
  // A field the page itself autofocuses wins; so does a part loaded later by htmx.
  function focusFirstInvalid(root) {
    if (!root.querySelector) return;
    var field = root.querySelector('[aria-invalid="true"]:not([type="hidden"])');
    if (!field) {
      var summary = root.querySelector("[data-form-errors]");
      if (summary) { summary.setAttribute("tabindex", "-1"); field = summary; }
    }
    if (field && !document.querySelector("[autofocus]")) field.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpPauseControl();
    focusFirstInvalid(document.querySelector("main") || document);
  });

  // <div data-plotly-figure="{data, layout, config}">: figures built in Python (charts.py).
  function renderCharts(root) {
    if (typeof window.Plotly === "undefined" || !root.querySelectorAll) return;
    root.querySelectorAll("[data-plotly-figure]:not([data-rendered])").forEach(function (el) {
      var figure = JSON.parse(el.getAttribute("data-plotly-figure"));
      el.setAttribute("data-rendered", "");
      window.Plotly.newPlot(el, figure.data || [], figure.layout || {}, figure.config || {});
    });
  }
  document.addEventListener("DOMContentLoaded", function () { renderCharts(document); });
  document.addEventListener("htmx:load", function (event) { renderCharts(event.target); });
})();
