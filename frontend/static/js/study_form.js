// The new-study form (dashboard/study_new.html): JND-only fields show only for JND, the engine's options only
// for an engine study, and the settings whose default depends on the kind follow the kind while untouched
// (their defaults are in data-default-2afc / data-default-jnd, from dashboard/forms.py). No inline JS (CSP).
(function () {
  "use strict";

  function checked(form, name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : null;
  }

  function show(form) {
    var kind = checked(form, "kind");
    var source = checked(form, "source");
    form.querySelectorAll("[data-jnd-only]").forEach(function (el) { el.hidden = kind !== "jnd"; });
    form.querySelectorAll("[data-engine-only]").forEach(function (el) { el.hidden = source === "zip"; });
  }

  function followKind(form, from, to) {
    if (!from || from === to) { return; }
    form.querySelectorAll("[data-default-" + to + "]").forEach(function (input) {
      if (input.value === input.getAttribute("data-default-" + from)) {
        input.value = input.getAttribute("data-default-" + to);
      }
    });
  }

  function init() {
    var form = document.getElementById("new-study");
    if (!form) { return; }
    var kind = checked(form, "kind");
    show(form);
    // Capturing: the values follow the kind before htmx (listening on the form as the event bubbles)
    // sends them for the preview.
    form.addEventListener("change", function (event) {
      if (event.target.name === "kind") {
        var next = checked(form, "kind");
        followKind(form, kind, next);
        kind = next;
      }
      show(form);
    }, true);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
