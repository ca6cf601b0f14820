// The page's frame on every screen size: the phone menu and scrollable table regions.
// Loaded without `defer` in <head> so the "js" class is set before the first paint: the
// sidebar's links are folded behind the menu button only when a script can unfold them
// (without JavaScript they stay shown, stacked above the page).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // <button data-menu-toggle aria-controls="..." aria-expanded>: shows/hides the sidebar's
  // links below the breakpoint (static/css/app.css); above it the button is not displayed.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-menu-toggle]") : null;
    if (!button) return;
    button.setAttribute("aria-expanded", button.getAttribute("aria-expanded") === "true" ? "false" : "true");
  });
  // Escape inside the open menu folds it and gives the focus back to its button.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !(event.target instanceof Element)) return;
    var button = document.querySelector("[data-menu-toggle][aria-expanded='true']");
    var menu = button && document.getElementById(button.getAttribute("aria-controls"));
    if (menu && menu.contains(event.target)) {
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });

  // Every data table scrolls inside its own labelled, focusable region (WCAG 1.4.10: the page
  // itself never scrolls sideways; a keyboard user can scroll the region). Templates may wrap
  // a table themselves (<div class="table-scroll" role="region" aria-label tabindex="0">);
  // this wraps every other one, on load and whenever content is added (htmx swaps, scripts).
  var TEXT_LIMIT = 80;

  function text(element) {
    return element ? (element.textContent || "").replace(/\s+/g, " ").trim() : "";
  }

  // The table's name: its caption, its own label, else the nearest heading before it.
  function labelFor(table) {
    var caption = table.querySelector(":scope > caption");
    if (text(caption)) return text(caption);
    if (table.getAttribute("aria-label")) return table.getAttribute("aria-label");
    var by = table.getAttribute("aria-labelledby");
    if (by) {
      var named = by.split(/\s+/).map(function (id) { return text(document.getElementById(id)); }).join(" ").trim();
      if (named) return named;
    }
    var headings = document.querySelectorAll("h1, h2, h3, h4, h5, h6, legend, [role='heading']");
    for (var i = headings.length - 1; i >= 0; i--) {
      if (headings[i].compareDocumentPosition(table) & Node.DOCUMENT_POSITION_FOLLOWING && text(headings[i])) {
        return text(headings[i]).slice(0, TEXT_LIMIT);
      }
    }
    return "Table";
  }

  function wrap(table) {
    var parent = table.parentElement;
    if (!parent) return;
    var region = parent.classList.contains("table-scroll") ? parent : null;
    if (!region) {
      var focused = table.contains(document.activeElement) ? document.activeElement : null;
      region = document.createElement("div");
      region.className = "table-scroll";
      parent.insertBefore(region, table);
      region.appendChild(table);
      // moving an element drops the focus inside it: give it back (a swapped-in list)
      if (focused && document.activeElement !== focused) focused.focus({ preventScroll: true });
    }
    if (!region.hasAttribute("role")) region.setAttribute("role", "region");
    if (!region.hasAttribute("aria-label") && !region.hasAttribute("aria-labelledby")) {
      region.setAttribute("aria-label", labelFor(table));
    }
    if (!region.hasAttribute("tabindex")) region.setAttribute("tabindex", "0");
  }

  function wrapAll(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.tagName === "TABLE") wrap(root);
    root.querySelectorAll("table").forEach(wrap);
  }

  function start() {
    wrapAll(document.body);
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        record.addedNodes.forEach(function (node) {
          if (node.nodeType === Node.ELEMENT_NODE) wrapAll(node);
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
