// Progressive enhancement only: every form works without this script.
(function () {
  // The words the script shows, in the page's language (review.html puts them on the page's head).
  var words = document.querySelector(".review-head") || { dataset: {} };
  var recording = words.dataset.recording || "Recording…";
  var paragraphTitle = words.dataset.paragraphTitle || "Comment on paragraph";
  // The review token is the focal point's key: once the page is shown, it leaves the address bar (and
  // so the history, a screen shared, a bookmark). The forms carry it; a reload shows the lost-link page,
  // where the person gets their links sent again.
  if (words.dataset && words.dataset.address && window.history && history.replaceState) {
    history.replaceState(null, "", words.dataset.address + location.search + location.hash);
  }
  // One click, one submission: the server also records a repeated form (same submission_id) once;
  // this just spares the second request.
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    var buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach(function (b) { b.dataset.label = b.textContent; });
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      buttons.forEach(function (b) { b.disabled = true; b.textContent = recording; });
    });
    // Coming back to this page from the browser's history shows the form as it was, still disabled:
    // make it usable again (the server still records one comment or sign-off per form).
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) { return; }
      delete form.dataset.sent;
      buttons.forEach(function (b) { b.disabled = false; b.textContent = b.dataset.label; });
    });
  });
  // Tell the coordinator the task has been opened: a person's browser runs this, a mail scanner that
  // fetches the link does not. Nothing depends on it arriving.
  var head = document.querySelector("[data-opened-url]");
  if (head && window.fetch) {
    var body = new URLSearchParams();
    body.set("csrf_token", head.dataset.csrf);
    fetch(head.dataset.openedUrl, { method: "POST", body: body, credentials: "same-origin", keepalive: true })
      .catch(function () {});
  }
  document.querySelectorAll("button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
    });
  });
  // Clicking a paragraph number opens the comment form of its section with that paragraph chosen.
  document.querySelectorAll(".para-number").forEach(function (number) {
    number.setAttribute("role", "button");
    number.setAttribute("tabindex", "0");
    number.title = paragraphTitle + " " + number.textContent.trim();
    function choose() {
      var section = number.closest("[data-section-id]");
      var details = section && section.querySelector("details.add-comment");
      if (!details) { return; }
      details.open = true;
      var select = details.querySelector("[data-paragraph-select]");
      if (select) { select.value = number.textContent.trim(); }
      var body = details.querySelector("textarea[name=body]");
      if (body) { body.focus(); }
    }
    number.addEventListener("click", choose);
    number.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); choose(); } });
  });
})();
