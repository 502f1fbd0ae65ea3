// Live progress of backups, restores and data exports: rows marked data-work="<object>-<id>" follow the
// "work.update" messages of the page's socket (data-socket on this script tag). A row that is not on the page yet
// (work started elsewhere), or work that just finished on a page that wants fresh links, reloads the page.
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-socket]");
  var path = script.getAttribute("data-socket");
  var reloadOnDone = script.getAttribute("data-reload-on-done") === "true";
  var labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed" };

  function sizeText(bytes) {
    if (bytes === null || bytes === undefined) return "";
    var units = ["bytes", "KB", "MB", "GB", "TB"], n = bytes, i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function field(row, name) { return row.querySelector('[data-field="' + name + '"]'); }

  function update(data) {
    var row = document.querySelector('[data-work="' + data.object + "-" + data.id + '"]');
    if (!row) {
      // Work started elsewhere: show it (finished work that is not on this page is someone else's history).
      if (data.status === "queued" || data.status === "running") window.location.reload();
      return;
    }
    var active = data.status === "queued" || data.status === "running";
    var inProgress = active || (data.status === "succeeded" && data.progress < 100);  // verifying
    var status = field(row, "status");
    if (status) {
      var verifying = data.status === "succeeded" && data.progress < 100;
      status.textContent = verifying ? "Verifying" : labels[data.status] || data.status;
      status.className = "pill status-" + data.status;
    }
    var wrap = field(row, "progress-wrap"), bar = field(row, "progress");
    if (wrap) wrap.classList.toggle("hidden", !inProgress);
    if (bar) bar.style.width = data.progress + "%";
    var stage = field(row, "stage");
    if (stage) stage.textContent = inProgress ? data.stage + " (" + data.progress + "%)" : "";
    var size = field(row, "size");
    if (size && data.size) size.textContent = sizeText(data.size);
    var duration = field(row, "duration");
    if (duration && data.duration_seconds !== null) duration.textContent = data.duration_seconds + " s";
    var verified = field(row, "verified");
    if (verified && data.verified_at) verified.textContent = new Date(data.verified_at).toLocaleString();
    if (verified && data.verification_error) verified.textContent = "failed: " + data.verification_error;
    var sha = field(row, "sha256");
    if (sha && data.sha256) { sha.textContent = data.sha256.slice(0, 12); sha.title = data.sha256; }
    var actions = field(row, "actions");
    if (actions && data.status === "succeeded" && !actions.querySelector("a")) {
      // Finished while the page was open: the download is there at once, the rest after a reload.
      var link = document.createElement("a");
      link.className = "button small";
      link.href = actions.getAttribute("data-download");
      link.textContent = "Download";
      actions.insertBefore(link, actions.firstChild);
    }
    var shownActive = row.getAttribute("data-active") !== "false";
    if (!inProgress && reloadOnDone && shownActive && !row.getAttribute("data-done")) {
      row.setAttribute("data-done", "1");
      window.setTimeout(function () { window.location.reload(); }, 300);
    }
  }

  var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
  function connect(delay) {
    var socket = new WebSocket(proto + window.location.host + path);
    socket.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "work.update") update(msg.data);
    };
    socket.onclose = function () { window.setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay); };
  }
  connect(1000);
})();
