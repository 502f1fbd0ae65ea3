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
    if (!badge) return;
    badge.textContent = data.pending;
    badge.classList.toggle("hidden", !data.pending);
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
