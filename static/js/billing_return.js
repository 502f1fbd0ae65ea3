// The page Stripe Checkout returns to: polls billing_status until the webhook has activated the subscription.
(function () {
  "use strict";
  var box = document.querySelector("[data-testid=billing-return]");
  var started = Date.now();
  var timer = window.setInterval(check, 2000);

  function show(title, text) {
    document.getElementById("return-title").textContent = title;
    document.getElementById("return-text").textContent = text;
  }

  function check() {
    if (Date.now() - started > 5 * 60 * 1000) {
      window.clearInterval(timer);
      show("Still waiting for Stripe", "Your payment is recorded by Stripe but not confirmed here yet. " +
           "Check the Billing page in a few minutes; you will also get an email.");
      return;
    }
    fetch(box.getAttribute("data-status-url"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.active) return;
        window.clearInterval(timer);
        box.setAttribute("data-active", "true");
        show("Your subscription is active", "Thank you! " + data.plan + " is active.");
        document.getElementById("return-progress").classList.add("hidden");
        document.getElementById("return-dashboard").classList.remove("hidden");
      })
      .catch(function () {});
  }
})();
