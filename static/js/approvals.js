// The approvals inbox (templates/approvals/inbox.html): selecting a request into the detail
// pane, deciding it, keyboard shortcuts, and merging the list that htmx polls without ever
// replacing the element that holds the focus. No inline script: the CSP allows /static/ only.
(function () {
  "use strict";

  var inbox = document.getElementById("approvals-inbox");
  if (!inbox) return;
  var pane = document.getElementById("approval-detail");
  var live = document.getElementById("inbox-live");
  var poller = document.getElementById("approval-poll");
  var help = document.getElementById("shortcut-help");
  var announcer = document.getElementById("inbox-announce");
  var liveState = document.getElementById("live-state");
  var detailUrl = inbox.getAttribute("data-detail-url"); // /approvals/0/
  var pollSeconds = Number(inbox.getAttribute("data-poll-seconds")) || 4;
  var waitingView = inbox.getAttribute("data-status") === "pending";
  var selected = inbox.getAttribute("data-selected") || "";
  var loading = null; // the AbortController of the detail being fetched
  var updatedAt = Date.now();
  var narrow = window.matchMedia("(max-width: 64rem)");

  function slice(list) { return Array.prototype.slice.call(list); }

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 20);
  }

  function urlFor(id, suffix) { return detailUrl.replace(/0\/$/, id + "/" + (suffix || "")); }
  function rows() { return slice(document.querySelectorAll("#approval-list > li[data-id]")); }
  function rowOf(id) { return id ? document.getElementById("req-" + id) : null; }
  function linkOf(row) { return row ? row.querySelector(".approval-link") : null; }

  function markSelected() {
    rows().forEach(function (row) {
      var on = row.getAttribute("data-id") === selected;
      row.classList.toggle("is-selected", on);
      var link = linkOf(row);
      if (!link) return;
      if (on) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    });
  }

  function rememberInUrl(id) {
    var url = new URL(window.location.href);
    if (id) url.searchParams.set("request", id);
    else url.searchParams.delete("request");
    window.history.replaceState(null, "", url.pathname + url.search);
  }

  // The request the pane shows, once it is loaded (null while another one loads).
  function shown() {
    if (pane.hasAttribute("aria-busy")) return null;
    var article = pane.querySelector("article[data-id]");
    return article && article.getAttribute("data-id") === selected ? article : null;
  }

  function select(id, options) {
    options = options || {};
    if (!id) return;
    selected = String(id);
    markSelected();
    rememberInUrl(selected);
    var link = linkOf(rowOf(selected));
    if (link && options.focus !== false) link.focus();
    if (loading) loading.abort();
    var mine = (loading = new AbortController());
    pane.setAttribute("aria-busy", "true");
    return fetch(urlFor(selected), {
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
      signal: mine.signal,
    })
      .then(function (response) {
        if (response.url.indexOf("/login/") >= 0) throw new Error("you were logged out: log in again");
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (mine !== loading) return;
        loading = null;
        pane.innerHTML = html;
        pane.removeAttribute("aria-busy");
        if (options.reveal && narrow.matches) {
          var heading = pane.querySelector("#detail-heading");
          if (heading) heading.focus();
          pane.scrollIntoView({ block: "start" });
        }
      })
      .catch(function (error) {
        if (error.name === "AbortError") return;
        pane.removeAttribute("aria-busy");
        announce("Request #" + id + " could not be loaded: " + error.message + ".");
      });
  }

  function neighbourOf(id) {
    var list = rows();
    var index = list.findIndex(function (row) { return row.getAttribute("data-id") === id; });
    if (index < 0) return list.length ? list[0].getAttribute("data-id") : null;
    var next = list[index + 1] || list[index - 1];
    return next ? next.getAttribute("data-id") : null;
  }

  function move(step) {
    var list = rows();
    if (!list.length) { announce("Nothing in the list."); return; }
    var index = list.findIndex(function (row) { return row.getAttribute("data-id") === selected; });
    var next = index < 0 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    if (next === index) { announce(step > 0 ? "That was the last request." : "That was the first request."); return; }
    select(list[next].getAttribute("data-id"));
  }

  function refresh() { if (window.htmx) window.htmx.trigger(poller, "approvals-refresh"); }

  // ------------------------------------------------------------------ deciding

  function decisionForm() {
    var article = shown();
    return article ? article.querySelector("form[data-decision-form]") : null;
  }

  function cannotDecide() {
    if (!shown()) { announce("The request is still loading."); return; }
    var why = pane.querySelector("[data-testid=cannot-decide], [data-testid=decided]");
    announce(why ? why.textContent.trim() : "There is nothing to decide here.");
  }

  function decide(form, choice) {
    var article = form.closest("article[data-id]");
    var id = article.getAttribute("data-id");
    var data = new FormData(form);
    data.set("choice", choice);
    slice(form.querySelectorAll("button")).forEach(function (b) { b.disabled = true; });
    pane.setAttribute("aria-busy", "true");
    return fetch(form.action, {
      method: "POST",
      body: data,
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.text().then(function (html) {
          return { status: response.status, html: html, url: response.url };
        });
      })
      .then(function (answer) {
        if (answer.url.indexOf("/login/") >= 0) throw new Error("you were logged out: log in again");
        if (answer.status >= 500 || answer.html.indexOf("data-id=\"" + id + "\"") < 0) {
          throw new Error("the server answered " + answer.status);
        }
        var neighbour = neighbourOf(id);
        pane.innerHTML = answer.html;
        pane.removeAttribute("aria-busy");
        var fresh = pane.querySelector("article[data-id]");
        var done = fresh.getAttribute("data-done");
        var notice = fresh.getAttribute("data-notice");
        if (fresh.getAttribute("data-final") === "1" && waitingView) {
          var row = rowOf(id);
          if (row) row.remove();
        }
        if (done) {
          announce(done);
          refresh();
          if (neighbour && neighbour !== id) select(neighbour);
          else { var heading = pane.querySelector("#detail-heading"); if (heading) heading.focus(); }
        } else if (notice) {
          announce(notice);
          refresh();
          var alert = pane.querySelector("[data-testid=decision-notice]");
          if (alert) { alert.setAttribute("tabindex", "-1"); alert.focus(); }
        } else {
          // a field error (a rejection without a comment): back to the comment
          var again = pane.querySelector("form[data-decision-form]");
          if (again && choice === "reject") startReject(again);
          else if (again) { var field = again.querySelector("#decision-comment"); if (field) field.focus(); }
        }
      })
      .catch(function (error) {
        pane.removeAttribute("aria-busy");
        slice(form.querySelectorAll("button")).forEach(function (b) { b.disabled = false; });
        announce("Not saved: " + error.message + ". Try again.");
      });
  }

  function startReject(form) {
    form.setAttribute("data-mode", "reject");
    var hint = form.querySelector("[data-reject-hint]");
    if (hint) hint.hidden = false;
    var comment = form.querySelector("#decision-comment");
    if (comment) comment.focus();
  }

  function stopReject(form) {
    form.removeAttribute("data-mode");
    var hint = form.querySelector("[data-reject-hint]");
    if (hint) hint.hidden = true;
    var link = linkOf(rowOf(selected));
    if (link) link.focus();
    else if (document.activeElement) document.activeElement.blur();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("[data-decision-form]")) return;
    event.preventDefault();
    var choice = event.submitter ? event.submitter.value : "";
    if (choice === "approve" || choice === "reject") decide(form, choice);
  });

  // ------------------------------------------------------------------ the keyboard

  function typing(target) {
    if (!(target instanceof HTMLElement)) return false;
    if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
    return target.tagName === "INPUT" && !/^(checkbox|radio|button|submit|reset)$/.test(target.type);
  }

  function toggleTick() {
    var box = document.getElementById("tick-" + selected);
    if (!box) { announce("Only low-risk requests you may decide can be ticked for a bulk decision."); return; }
    box.checked = !box.checked;
    announce((box.checked ? "Ticked #" : "Unticked #") + selected + ".");
  }

  function showHelp() { if (help && !help.open) help.showModal(); }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var target = event.target;
    if (target instanceof HTMLTextAreaElement && target.id === "decision-comment" && target.form) {
      var form = target.form;
      if (event.key === "Enter" && !event.shiftKey && form.getAttribute("data-mode") === "reject") {
        event.preventDefault();
        decide(form, "reject");
      } else if (event.key === "Escape") {
        event.preventDefault();
        stopReject(form);
      }
      return;
    }
    if (typing(target) || (help && help.open)) return;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": {
        var approveForm = decisionForm();
        if (approveForm) decide(approveForm, "approve");
        else cannotDecide();
        break;
      }
      case "r": {
        var rejectForm = decisionForm();
        if (rejectForm) startReject(rejectForm);
        else cannotDecide();
        break;
      }
      case "x": toggleTick(); break;
      case "?": showHelp(); break;
      default: return;
    }
    // handled: the key must not also type into the field it may have focused (r)
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.closest("[data-shortcut-help]")) { showHelp(); return; }
    var link = target.closest("#approval-list .approval-link");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    select(link.closest("[data-id]").getAttribute("data-id"), { reveal: true });
  });

  // ------------------------------------------------------------------ the polled list

  function holdsFocus(node) {
    var active = document.activeElement;
    return !!active && active !== document.body && (node === active || node.contains(active));
  }

  function sameKind(a, b) { return a.nodeType === b.nodeType && a.nodeName === b.nodeName; }

  // Bring ``old`` (which holds the focus) up to date with ``fresh`` in place.
  function morph(old, fresh) {
    slice(old.attributes).forEach(function (attr) {
      if (!fresh.hasAttribute(attr.name)) old.removeAttribute(attr.name);
    });
    slice(fresh.attributes).forEach(function (attr) {
      if (old.getAttribute(attr.name) !== attr.value) old.setAttribute(attr.name, attr.value);
    });
    if (old.hasAttribute("data-keyed")) { mergeKeyed(old, fresh); return; }
    if (old === document.activeElement) { old.replaceChildren.apply(old, slice(fresh.childNodes)); return; }
    var olds = slice(old.childNodes);
    var news = slice(fresh.childNodes);
    for (var i = 0; i < Math.max(olds.length, news.length); i++) {
      var o = olds[i], n = news[i];
      if (!n) { if (!holdsFocus(o)) o.remove(); }
      else if (!o) old.appendChild(n);
      else if (o.nodeType === 1 && holdsFocus(o)) { if (sameKind(o, n)) morph(o, n); }
      else if (!o.isEqualNode(n)) o.replaceWith(n);
    }
  }

  // Children with ids: keep the ones still there in place (the list's order is stable: risk
  // and age never change), drop the gone, insert the new after their predecessor.
  function mergeKeyed(old, fresh) {
    var wanted = slice(fresh.children);
    var ids = {};
    wanted.forEach(function (node) { ids[node.id] = true; });
    slice(old.children).forEach(function (node) { if (!node.id || !ids[node.id]) node.remove(); });
    var previous = null;
    wanted.forEach(function (node) {
      var current = null;
      slice(old.children).some(function (child) { return child.id === node.id && (current = child); });
      if (current) {
        if (holdsFocus(current)) morph(current, node);
        else if (!current.isEqualNode(node)) { current.replaceWith(node); current = node; }
        previous = current;
      } else {
        old.insertBefore(node, previous ? previous.nextSibling : old.firstChild);
        previous = node;
      }
    });
  }

  function showAge() {
    var seconds = Math.round((Date.now() - updatedAt) / 1000);
    // paused by the top bar's "Pause live updates" (static/js/app.js): old on purpose
    var paused = document.documentElement.hasAttribute("data-live-paused");
    var stale = !paused && seconds > pollSeconds * 3 + 2;
    liveState.classList.toggle("stale", stale);
    liveState.textContent = paused
      ? "Live updates paused: updated " + (seconds < 2 ? "just now" : seconds + " s ago")
      : stale
      ? "Not updated for " + seconds + " s: the list may be out of date (is the connection down?)"
      : "Live: updated " + (seconds < 2 ? "just now" : seconds + " s ago");
  }

  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt !== poller) return;
    var parsed = event.detail.successful
      ? new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html")
      : null;
    if (!parsed || !parsed.getElementById("approval-list")) {
      // an error page or the login page: keep what is shown, and say how old it is
      showAge();
      return;
    }
    var hadSelected = !!rowOf(selected);
    var ticked = slice(document.querySelectorAll(".bulk-check:checked")).map(function (box) { return box.value; });
    mergeKeyed(live, parsed.body);
    ticked.forEach(function (id) {
      var box = document.getElementById("tick-" + id);
      if (box) box.checked = true;
    });
    markSelected();
    updatedAt = Date.now();
    showAge();
    var article = pane.querySelector("article[data-id]");
    if (hadSelected && !rowOf(selected) && article && article.getAttribute("data-status") === "pending") {
      // decided elsewhere (or expired): show its final state, unless the approver is typing
      var comment = pane.querySelector("#decision-comment");
      if (!comment || (document.activeElement !== comment && !comment.value)) {
        select(selected, { focus: false });
        announce("#" + selected + " was decided meanwhile.");
      }
    }
    inbox.dispatchEvent(new CustomEvent("approvals:merged", { bubbles: true }));
  });

  window.setInterval(showAge, 1000);
  markSelected();
})();
