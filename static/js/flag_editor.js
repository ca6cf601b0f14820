// The flag editor's progressive enhancement (templates/flags/flag_form.html). Without this
// script every part works: "Add …" buttons are submit buttons the server answers with one
// more row, "Remove" is a checkbox, and the server refuses an operator that does not fit its
// context field. With it: rows are added in place, a removed row greys out, each strategy
// shows only its own fields, and the operator list keeps to the operators that fit the
// context field (the lists come from the server, apps.flags.validation.operators_for).
(function () {
  "use strict";

  function childMatching(parent, selector) {
    for (var i = 0; i < parent.children.length; i++) {
      if (parent.children[i].matches(selector)) return parent.children[i];
    }
    return null;
  }

  function fitOperators(row) {
    var field = row.querySelector("[data-context-field]");
    var select = row.querySelector("select[data-operator]");
    if (!field || !select) return;
    var fitting = (field.value.trim() === "currentTime"
      ? select.getAttribute("data-fit-current-time")
      : select.getAttribute("data-fit-other")).split(" ");
    var first = null;
    Array.prototype.forEach.call(select.options, function (option) {
      var fits = fitting.indexOf(option.value) >= 0;
      option.hidden = !fits;
      option.disabled = !fits;
      if (fits && first === null) first = option;
    });
    var chosen = select.options[select.selectedIndex];
    if ((!chosen || chosen.disabled) && first) select.value = first.value;
  }

  function showStrategyFields(block) {
    var select = block.querySelector("select[name$='-name']");
    if (!select) return;
    block.querySelectorAll("[data-for-strategies]").forEach(function (wrapper) {
      if (wrapper.closest("[data-strategy]") !== block) return;
      wrapper.hidden = wrapper.getAttribute("data-for-strategies").split(" ").indexOf(select.value) < 0;
    });
  }

  function init(root) {
    root.querySelectorAll(".constraint-row").forEach(fitOperators);
    if (root.matches && root.matches(".constraint-row")) fitOperators(root);
    root.querySelectorAll("[data-strategy]").forEach(showStrategyFields);
    if (root.matches && root.matches("[data-strategy]")) showStrategyFields(root);
  }

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-add-row]") : null;
    if (!button) return;
    var prefix = button.getAttribute("data-add-row");
    var formset = button.closest("[data-formset]");
    if (!formset || formset.getAttribute("data-formset") !== prefix) return;
    var total = formset.querySelector("input[name='" + prefix + "-TOTAL_FORMS']");
    var template = childMatching(formset, "template[data-row-template]");
    var rows = childMatching(formset, "[data-rows]");
    if (!total || !template || !rows) return;
    event.preventDefault();
    var index = parseInt(total.value, 10) || 0;
    var html = template.innerHTML.split(template.getAttribute("data-placeholder")).join(String(index));
    var empty = childMatching(rows, "[data-empty]");
    if (empty) empty.remove();
    rows.insertAdjacentHTML("beforeend", html);
    total.value = String(index + 1);
    var added = rows.lastElementChild;
    init(added);
    var first = added.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.matches("input[type=checkbox][name$='-DELETE']")) {
      var row = target.closest("[data-row]");
      if (row) row.classList.toggle("removed", target.checked);
    }
    if (target.matches("[data-strategy] select[name$='-name']")) {
      showStrategyFields(target.closest("[data-strategy]"));
    }
  });

  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target instanceof Element && target.matches("[data-context-field]")) {
      fitOperators(target.closest(".constraint-row"));
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-flag-editor]").forEach(init);
  });
})();
