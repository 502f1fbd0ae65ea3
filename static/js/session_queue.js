// The session page's "Sending queue" card: polls the session's queue figures (whatsapp.pacing.queue_stats)
// every few seconds while the page is visible. The queue changes with every send, far more often than the
// session's status, so it is polled instead of pushed on the session's websocket.
(function () {
  "use strict";
  var card = document.querySelector("[data-queue-url]");
  if (!card || !window.fetch) return;
  var url = card.getAttribute("data-queue-url");
  var POLL_MS = 4000;
  var timer = null;

  function formatTime(iso) {
    var date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(undefined, {
      day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }

  function field(name) { return card.querySelector('[data-queue="' + name + '"]'); }

  function setTime(el, iso, prefix, suffix) {
    el.textContent = prefix || "";
    var time = document.createElement("time");
    time.setAttribute("datetime", iso);
    time.textContent = formatTime(iso);
    el.appendChild(time);
    if (suffix) el.appendChild(document.createTextNode(suffix));
  }

  function apply(q) {
    field("queued").textContent = String(q.queued);
    var next = field("next_send");
    if (q.next_queued_send_at) setTime(next, q.next_queued_send_at);
    else next.textContent = q.queued ? "now" : "—";
    field("sent_today").textContent = q.sent_today + (q.daily_cap ? " of " + q.daily_cap : "");
    var warmup = field("warmup");
    if (q.warmup.active) {
      setTime(warmup, q.warmup.until, "New number: warming up, at most " + q.warmup.daily_cap +
        " messages a day until ", ".");
    } else {
      warmup.textContent = "";
    }
  }

  function poll() {
    timer = null;
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) apply(data); })
      .catch(function () {})
      .then(schedule);
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = window.setTimeout(poll, POLL_MS);
  }

  // A change of the session's state (sessions.js: connected, a new link) can change its figures (the warm-up of a
  // number linked just now): ask at once rather than at the next poll.
  var lastStatus = null;
  document.addEventListener("switchboard:session", function (event) {
    var status = event.detail && event.detail.status;
    if (status === lastStatus) return;
    lastStatus = status;
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    poll();
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null) poll();
  });
  schedule();
})();
