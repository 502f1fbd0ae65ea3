// Behaviour every page shares, kept out of the markup so the Content-Security-Policy can refuse inline scripts
// and inline style attributes (config/settings.py, CONTENT_SECURITY_POLICY):
//  - data-confirm="…" on a form (or on the button that submits it): ask first; "Cancel" stops the submission
//    before any other handler sees it (conversations.js posts some of these forms itself).
//  - data-once on a form: its buttons are disabled once it is submitted (a double click must not open two
//    Stripe Checkout sessions).
//  - data-progress="42" on a progress bar: its width, which live updates then change through element.style.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var question = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    if (form.hasAttribute("data-once")) {
      window.setTimeout(function () {
        form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
      }, 0);
    }
  }, true);

  function sizeBars() {
    document.querySelectorAll("[data-progress]").forEach(function (bar) {
      var value = parseFloat(bar.getAttribute("data-progress"));
      if (!isNaN(value)) bar.style.width = Math.max(0, Math.min(100, value)) + "%";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", sizeBars);
  else sizeBars();
})();
