// The new-round wizard's helpers. The form works without them (console/new_round.html): they show only
// the chosen version's sections at once, find organisations, select a kind at once, keep "All sections"
// and the section boxes of a row consistent, and count working days while the deadline is typed, as the
// server does (weekdays without the public holidays the page lists, after today up to the deadline's day).
(function () {
  "use strict";
  var form = document.getElementById("round-wizard");
  if (!form) return;

  document.querySelectorAll(".js-only").forEach(function (element) { element.hidden = false; });

  // Only the chosen version's section list; the matrix keeps the version it was drawn for until the
  // form is updated, and says so.
  var versionSelect = document.getElementById("w-version");
  var matrixVersion = form.querySelector('input[name="matrix_version"]');
  var changed = form.querySelector("[data-version-changed]");
  function showVersion() {
    form.querySelectorAll(".version-sections").forEach(function (group) {
      group.hidden = group.dataset.version !== versionSelect.value;
    });
    if (changed) changed.hidden = versionSelect.value === matrixVersion.value;
  }
  versionSelect.addEventListener("change", showVersion);
  showVersion();

  // Search: rows whose name or key holds every word typed.
  var rows = Array.prototype.slice.call(form.querySelectorAll("tr[data-organisation]"));
  var search = form.querySelector("[data-organisation-search]");
  if (search) {
    search.addEventListener("input", function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      rows.forEach(function (row) {
        var text = row.dataset.search;
        row.hidden = !words.every(function (word) { return text.indexOf(word) !== -1; });
      });
    });
  }

  // Select all of a kind (the rows the search shows), and the kind's box follows its rows.
  function syncKind(body) {
    var box = body.querySelector("[data-select-kind]");
    if (!box) return;
    var consult = body.querySelectorAll("[data-consult]");
    var on = body.querySelectorAll("[data-consult]:checked").length;
    box.checked = on > 0 && on === consult.length;
    box.indeterminate = on > 0 && on < consult.length;
  }
  form.querySelectorAll("tbody[data-kind]").forEach(function (body) {
    var box = body.querySelector("[data-select-kind]");
    if (box) {
      box.addEventListener("change", function () {
        body.querySelectorAll("tr[data-organisation]").forEach(function (row) {
          if (!row.hidden) row.querySelector("[data-consult]").checked = box.checked;
        });
        syncKind(body);
      });
    }
    body.addEventListener("change", function (event) {
      var target = event.target;
      var row = target.closest("tr[data-organisation]");
      if (!row) return;
      if (target.matches("[data-consult]")) syncKind(body);
      // A section ticked means "these sections", not "all"; "All sections" clears the others.
      var all = row.querySelector("[data-all-sections]");
      var sections = row.querySelectorAll('input[name="sections"]');
      if (target.name === "sections" && target.checked) all.checked = false;
      if (target === all && all.checked) sections.forEach(function (box) { box.checked = false; });
    });
    syncKind(body);
  });

  // Working days from today to the deadline's day, and the warning below the procedure's minimum.
  var holidays = {};
  (form.dataset.holidays || "").split(" ").forEach(function (day) { if (day) holidays[day] = true; });
  var deadline = document.getElementById("w-deadline");
  var procedure = document.getElementById("w-procedure");
  var period = form.querySelector("[data-period]");
  var count = form.querySelector("[data-period-count]");
  var minimum = form.querySelector("[data-period-minimum]");
  var warning = form.querySelector("[data-period-warning]");
  function iso(day) {
    var month = String(day.getUTCMonth() + 1).padStart(2, "0");
    return day.getUTCFullYear() + "-" + month + "-" + String(day.getUTCDate()).padStart(2, "0");
  }
  function recount() {
    var end = /^(\d{4})-(\d{2})-(\d{2})/.exec(deadline.value);
    var start = /^(\d{4})-(\d{2})-(\d{2})$/.exec(form.dataset.today || "");
    if (!end || !start) { period.hidden = true; warning.hidden = true; return; }
    var day = new Date(Date.UTC(+start[1], start[2] - 1, +start[3]));
    var last = new Date(Date.UTC(+end[1], end[2] - 1, +end[3]));
    var days = 0;
    for (var guard = 0; day < last && guard < 1200; guard++) {
      day.setUTCDate(day.getUTCDate() + 1);
      var weekday = day.getUTCDay();
      if (weekday !== 0 && weekday !== 6 && !holidays[iso(day)]) days++;
    }
    var needed = +procedure.options[procedure.selectedIndex].dataset.minimum;
    count.textContent = String(days);
    minimum.textContent = String(needed);
    period.hidden = false;
    warning.hidden = days >= needed;
  }
  deadline.addEventListener("input", recount);
  procedure.addEventListener("change", recount);
  recount();
})();
