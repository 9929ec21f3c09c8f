// The round page's dashboard keeps itself up to date while the round is open: every 30 seconds it fetches
// /console/rounds/{id}/dashboard (the same part of the page, the same search, filter and page) and puts it
// in place of the old one. Progressive enhancement only: without this script the page has a Refresh link.
//
// It never takes away what a person is doing: no refresh while a form field on the page has the focus or
// holds something typed, or while the tab is hidden; the organisations whose actions were open stay open.
// It stops when the round is no longer open (the new dashboard has no refresh address) or when the answer
// is not a dashboard (signed out, say).
(function () {
  var board = document.getElementById("dashboard");
  if (!board || !window.fetch || !window.DOMParser) { return; }

  function busy() {
    var active = document.activeElement;
    if (active && active.closest && active.closest("form")) { return true; }
    var fields = document.querySelectorAll("form input, form textarea, form select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.type === "hidden" || field.type === "submit") { continue; }
      if (field.tagName === "SELECT") {
        for (var j = 0; j < field.options.length; j++) {
          if (field.options[j].selected !== field.options[j].defaultSelected) { return true; }
        }
      } else if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked !== field.defaultChecked) { return true; }
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    var sent = document.querySelector("form[data-sent]");
    return Boolean(sent);
  }

  // The forms of the new dashboard work as the page's first ones do (review.js binds those): one
  // submission per form, and a confirmation where a button asks for one.
  function bind(root) {
    root.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.dataset.sent) { event.preventDefault(); return; }
        form.dataset.sent = "1";
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      });
    });
    root.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  function schedule() {
    var url = board.dataset.refreshUrl;
    if (!url) { return; }
    var seconds = parseInt(board.dataset.refreshSeconds, 10) || 30;
    window.setTimeout(refresh, seconds * 1000);
  }

  function refresh() {
    if (document.hidden || busy()) { schedule(); return; }
    fetch(board.dataset.refreshUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) { schedule(); return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("dashboard");
        if (!fresh) { return; }  // not a dashboard (signed out?): stop
        if (busy()) { schedule(); return; }  // someone started typing meanwhile
        var open = [];
        board.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
        var scrolls = [];
        board.querySelectorAll(".table-scroll").forEach(function (s) { scrolls.push(s.scrollLeft); });
        board.innerHTML = fresh.innerHTML;
        if (fresh.dataset.refreshUrl) {
          board.dataset.refreshUrl = fresh.dataset.refreshUrl;
        } else {
          delete board.dataset.refreshUrl;
        }
        open.forEach(function (id) {
          var again = document.getElementById(id);
          if (again && again.tagName === "DETAILS") { again.open = true; }
        });
        board.querySelectorAll(".table-scroll").forEach(function (s, i) { s.scrollLeft = scrolls[i] || 0; });
        bind(board);
        schedule();
      })
      .catch(function () { schedule(); });
  }

  schedule();
})();
