// Behaviour the templates ask for with data- attributes, so pages carry no inline script and
// no on*= handlers (the Content-Security-Policy allows scripts from /static/ only).
(function () {
  "use strict";

  // <select data-autosubmit>: submit its form when the choice changes (the tenant switcher).
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field instanceof HTMLElement && field.matches("[data-autosubmit]") && field.form) {
      field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
    }
  });

  // <a data-history-back href="...">: go back when there is somewhere to go back to; the href
  // is the way out without history (a page opened in a new tab).
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("[data-history-back]") : null;
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
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
