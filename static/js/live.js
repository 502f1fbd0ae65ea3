// Live updates for logged-in pages: tenant status (approval, provisioning progress) and, for platform
// admins, the pending sign-up badge. Websocket first; if it cannot connect, status pages poll instead.
(function () {
  "use strict";
  var watch = document.querySelector("[data-status-watch]");
  var badge = document.getElementById("pending-badge");
  var initialStatus = watch ? watch.getAttribute("data-status-watch") : null;
  var pollTimer = null;

  function onStatus(data) {
    if (!watch) return;
    var bar = document.getElementById("progress-bar");
    var text = document.getElementById("progress-text");
    if (bar && typeof data.progress === "number") {
      bar.style.width = data.progress + "%";
      bar.parentNode.setAttribute("aria-valuenow", data.progress);
    }
    if (text && typeof data.progress === "number") {
      text.textContent = data.total ? data.progress + "% done (step " + data.applied + " of " + data.total + ")"
                                    : data.progress + "% done";
    }
    if (data.error && text) { text.textContent = "Setting up failed; the platform team will retry."; }
    if (data.status && data.status !== initialStatus) { window.location.href = "/home/"; }
  }

  function onPending(data) {
    // The menu's badge, and the Approvals link kept beside the folded menu on phones.
    document.querySelectorAll("[data-pending-count]").forEach(function (count) { count.textContent = data.pending; });
    if (badge) badge.classList.toggle("hidden", !data.pending);
    var alert = document.querySelector("[data-pending-alert]");
    if (alert) alert.classList.toggle("hidden", !data.pending);
  }

  function poll() {
    if (!watch || pollTimer) return;
    pollTimer = window.setInterval(function () {
      fetch("/status.json", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) onStatus(data); })
        .catch(function () {});
    }, 4000);
  }

  if (!watch && !badge) return;
  var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
  var socket;
  try { socket = new WebSocket(proto + window.location.host + "/ws/tenant/status/"); }
  catch (e) { poll(); return; }
  socket.onmessage = function (event) {
    var msg = JSON.parse(event.data);
    if (msg.type === "tenant.status") onStatus(msg.data);
    if (msg.type === "platform.pending") onPending(msg.data);
  };
  socket.onerror = poll;
  socket.onclose = poll;
})();

document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-copy]");
  if (!target) return;
  var input = document.querySelector(target.getAttribute("data-copy"));
  input.select();
  if (navigator.clipboard) navigator.clipboard.writeText(input.value);
  target.textContent = "Copied";
});

// The websocket of a live page (the session and conversation pages): each message is parsed and handed to
// onMessage; a heartbeat ping keeps it open and a connection silent for too long is closed as dead; it reconnects
// with jittered exponential backoff (at once when the tab becomes visible again, back from a sleeping laptop or a
// background tab), and stops for good when the server says the thing is not there (4404) or not allowed (4403).
// The [data-live-state] element shows the state. stop(): no more reconnects (e.g. the session was deleted).
window.Switchboard = window.Switchboard || {};
window.Switchboard.liveSocket = function (path, onMessage) {
  "use strict";
  var HEARTBEAT_MS = 20000, SILENCE_MS = 50000, MAX_BACKOFF_MS = 30000;
  var liveState = document.querySelector("[data-live-state]");
  var socket = null, attempts = 0, heartbeat = null, lastMessageAt = 0, gone = false, reconnectTimer = null;

  function setLive(state, text) {
    if (!liveState) return;
    liveState.setAttribute("data-live-state", state);
    liveState.textContent = text;
  }

  function connect() {
    if (gone) return;
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    setLive("connecting", "Connecting…");
    try { socket = new WebSocket(proto + window.location.host + path); }
    catch (e) { scheduleReconnect(); return; }
    socket.onopen = function () {
      attempts = 0;
      lastMessageAt = Date.now();
      setLive("live", "Live");
      heartbeat = window.setInterval(function () {
        if (Date.now() - lastMessageAt > SILENCE_MS) { socket.close(); return; }  // a dead connection
        socket.send(JSON.stringify({ type: "ping" }));
      }, HEARTBEAT_MS);
    };
    socket.onmessage = function (event) {
      lastMessageAt = Date.now();
      onMessage(JSON.parse(event.data));
    };
    socket.onclose = function (event) {
      window.clearInterval(heartbeat);
      if (event.code === 4404 || event.code === 4403) {
        gone = true;
        setLive("offline", event.code === 4404 ? "Not available" : "Unavailable");
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (gone || reconnectTimer) return;
    attempts += 1;
    var delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, attempts - 1)) * (0.75 + Math.random() * 0.5);
    setLive("offline", "Offline — reconnecting…");
    reconnectTimer = window.setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && reconnectTimer) {
      window.clearTimeout(reconnectTimer);
      reconnectTimer = null;
      connect();
    }
  });

  connect();
  return { stop: function () { gone = true; } };
};
