// The campaign page's live progress: a websocket to ws/campaigns/<id>/ sends {"type": "campaign.progress", "data"}
// on connect and on every change; the figures on the page are replaced with it. Reconnects after a drop.
(function () {
  "use strict";
  var box = document.querySelector("[data-campaign-id]");
  if (!box) { return; }
  var id = box.getAttribute("data-campaign-id");
  var state = box.querySelector("[data-live-state]");
  var statusNames = {draft: "Draft", scheduled: "Scheduled", running: "Running", paused: "Paused",
                     cancelled: "Cancelled", finished: "Finished"};
  var lastStatus = null;

  function text(el, value) { if (el) { el.textContent = value; } }

  function show(data) {
    Object.keys(data.counts).forEach(function (key) {
      text(box.querySelector('[data-count="' + key + '"]'), data.counts[key]);
    });
    text(box.querySelector('[data-field="total"]'), data.total);
    text(box.querySelector('[data-field="estimated_finish"]'),
         data.estimated_finish ? new Date(data.estimated_finish).toLocaleString() : "—");
    var done = data.counts.sent + data.counts.failed + data.counts.skipped + data.counts.cancelled;
    var bar = box.querySelector("[data-bar]");
    if (bar && data.total) { bar.style.width = Math.min(100, Math.round(100 * done / data.total)) + "%"; }
    (data.sessions || []).forEach(function (s) {
      var row = box.querySelector('tr[data-session="' + s.session + '"]');
      if (!row) { return; }
      ["sent", "delivered", "read", "failed"].forEach(function (k) { text(row.querySelector('[data-c="' + k + '"]'), s.counts[k]); });
      text(row.querySelector('[data-c="today"]'), s.sent_today);
    });
    var status = document.querySelector('[data-testid="campaign-status"]');
    text(status, statusNames[data.status] || data.status);
    var reason = document.querySelector('[data-testid="pause-reason"]');
    if (reason) { reason.textContent = data.pause_reason || ""; reason.classList.toggle("hidden", !data.pause_reason); }
    if (lastStatus !== null && lastStatus !== data.status) { window.location.reload(); }  // the buttons change
    lastStatus = data.status;
  }

  var delay = 1000;
  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/campaigns/" + id + "/");
    socket.onopen = function () { delay = 1000; text(state, "Live"); box.setAttribute("data-live", "1"); };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "campaign.progress") { show(message.data); }
    };
    socket.onclose = function (event) {
      box.removeAttribute("data-live");
      if (event.code === 4404 || event.code === 4403) { text(state, "Not available."); return; }
      text(state, "Reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
}());
