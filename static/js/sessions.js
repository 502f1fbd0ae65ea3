// Live WhatsApp session pages (/sessions/ and /sessions/<name>/). The server renders the page; a websocket
// (whatsapp/consumers.py) then sends "session.update" messages with the whole state of a session, and this
// script writes them into the elements marked with data-field / data-when / data-unless. It reconnects with
// backoff, sends a heartbeat, and stops for good when the server says the session is not there (4404).
// Action forms marked data-async are posted with fetch (JSON back), so the page never reloads.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-sessions]");
  if (!root) return;

  var nextStep = readJson("next-step-data") || {};
  var live = null;  // the page's socket (Switchboard.liveSocket, static/js/live.js)
  var ACTIVITY_SHOWN = 50;

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function setText(scope, field, text) {
    scope.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) { el.textContent = text; });
  }

  function words(attr) { return (attr || "").split(/\s+/).filter(Boolean); }

  function applyVisibility(scope, status) {
    scope.querySelectorAll("[data-when]").forEach(function (el) {
      el.classList.toggle("hidden", words(el.getAttribute("data-when")).indexOf(status) === -1);
    });
    scope.querySelectorAll("[data-unless]").forEach(function (el) {
      el.classList.toggle("hidden", words(el.getAttribute("data-unless")).indexOf(status) !== -1);
    });
  }

  function formatTime(iso) {
    if (!iso) return "";
    var date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(undefined, {
      day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }

  function setTime(scope, field, iso, empty) {
    scope.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) {
      if (iso) el.setAttribute("datetime", iso); else el.removeAttribute("datetime");
      el.textContent = iso ? formatTime(iso) : empty;
    });
  }

  function phoneLine(data) {
    if (!data.phone) return "—";
    var phone = "+" + data.phone.replace(/^\+/, "");
    return data.push_name ? phone + " (" + data.push_name + ")" : phone;
  }

  // --- one session's state ---------------------------------------------------------------------------------
  function applyUpdate(data) {
    var scope = document.querySelector('[data-session-id="' + data.id + '"]');
    if (!scope) {  // a session added elsewhere: the list offers a reload instead of guessing its buttons
      var notice = document.querySelector("[data-new-sessions]");
      if (notice) notice.classList.remove("hidden");
      return;
    }
    if (scope.getAttribute("data-status") !== data.status) {
      // What the last action said ("starting…", "scanning…") is out of date once the status moves on.
      document.querySelectorAll(".messages .msg.success").forEach(function (msg) { msg.remove(); });
    }
    scope.setAttribute("data-status", data.status);
    scope.querySelectorAll("[data-status-pill]").forEach(function (pill) {
      pill.className = pill.className.replace(/\bs-[a-z_]+\b/g, "").trim() + " s-" + data.status;
    });
    setText(scope, "status_display", data.status_display);
    setText(scope, "status_detail", data.status_detail);
    setText(scope, "next_step", nextStep[data.status] || "");
    setText(scope, "phone_line", phoneLine(data));
    setText(scope, "push_name", data.push_name || "—");
    setText(scope, "pair_code", data.pair_code || "");
    setTime(scope, "last_activity_at", data.last_activity_at, "—");
    applyVisibility(scope, data.status);
    updateQr(scope, data);
    // Panels other features add to the page (the sending queue) follow the session without a socket of their own.
    document.dispatchEvent(new CustomEvent("switchboard:session", { detail: data }));
  }

  // The QR image is rendered by the server (/sessions/<name>/qr.svg); a new expiry means a new code.
  var qrExpiresAt = null;
  function updateQr(scope, data) {
    var img = scope.querySelector("[data-qr]");
    if (!img) return;
    if (data.status !== "qr" || !data.qr_code) {
      qrExpiresAt = null;
      return;
    }
    var version = data.qr_expires_at || String(Date.now());
    if (img.getAttribute("data-qr-version") === version) return;
    var next = new Image();
    next.onload = function () {
      img.src = next.src;
      img.setAttribute("data-qr-version", version);
      img.classList.remove("hidden");
    };
    next.src = img.getAttribute("data-qr-url") + "?v=" + encodeURIComponent(version);
    qrExpiresAt = data.qr_expires_at ? new Date(data.qr_expires_at) : null;
    tickQr();
  }

  function tickQr() {
    var el = document.querySelector('[data-field="qr_expiry"]');
    if (!el) return;
    if (!qrExpiresAt) { el.textContent = ""; return; }
    var seconds = Math.round((qrExpiresAt - Date.now()) / 1000);
    el.textContent = seconds > 0 ? "This code changes in " + seconds + " s." : "A new code is on its way…";
  }
  if (document.querySelector("[data-qr]")) {
    var initialQr = document.querySelector("[data-qr]").getAttribute("data-qr-version");
    if (initialQr) qrExpiresAt = new Date(initialQr);
    window.setInterval(tickQr, 1000);
  }

  // --- activity log (session page) -------------------------------------------------------------------------
  function activityItem(item) {
    var li = document.createElement("li");
    li.setAttribute("data-activity-id", item.id);
    li.setAttribute("data-kind", item.kind);
    var time = document.createElement("time");
    time.setAttribute("datetime", item.created_at);
    time.textContent = formatTime(item.created_at);
    var kind = document.createElement("strong");
    kind.textContent = item.kind_display;
    li.appendChild(time);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(kind);
    if (item.message) {
      var message = document.createElement("span");
      message.textContent = item.message;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(message);
    }
    return li;
  }

  function applyActivity(data) {
    var list = document.querySelector("[data-activity]");
    if (!list) return;
    if (data.replace) list.innerHTML = "";
    // Items come newest first; insert the oldest first so the newest ends on top.
    data.items.slice().reverse().forEach(function (item) {
      if (list.querySelector('[data-activity-id="' + item.id + '"]')) return;
      list.insertBefore(activityItem(item), list.firstChild);
    });
    while (list.children.length > ACTIVITY_SHOWN) list.removeChild(list.lastChild);
    var empty = document.querySelector("[data-activity-empty]");
    if (empty) empty.classList.toggle("hidden", list.children.length > 0);
  }

  function applyDeleted(data) {
    var scope = document.querySelector('[data-session-id="' + data.id + '"]');
    if (!scope) return;
    if (scope.tagName === "TR") { scope.parentNode.removeChild(scope); return; }
    var banner = document.querySelector("[data-deleted]");
    if (banner) banner.classList.remove("hidden");
    document.querySelectorAll("form[data-async] button").forEach(function (b) { b.disabled = true; });
    live.stop();
  }

  // --- the websocket ---------------------------------------------------------------------------------------
  function onMessage(msg) {
    if (msg.type === "session.update") applyUpdate(msg.data);
    else if (msg.type === "session.activity") applyActivity(msg.data);
    else if (msg.type === "session.deleted") applyDeleted(msg.data);
  }

  // --- forms posted without leaving the page ---------------------------------------------------------------
  function flash(ok, text) {
    var list = document.querySelector("[data-live-messages]");
    if (!list) return;
    var li = document.createElement("li");
    li.className = "msg " + (ok ? "success" : "error");
    li.setAttribute("role", ok ? "status" : "alert");
    li.textContent = text;
    list.innerHTML = "";
    list.appendChild(li);
  }

  function showFormError(form, text) {
    var slot = form.querySelector("[data-form-error]");
    if (slot) { slot.textContent = text || ""; slot.classList.toggle("hidden", !text); }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-async]") || event.defaultPrevented || !window.fetch) return;
    event.preventDefault();
    var data = new FormData(form);
    if (event.submitter && event.submitter.name) data.append(event.submitter.name, event.submitter.value);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    showFormError(form, "");
    // Not form.action: a field named "action" shadows that property.
    var url = form.getAttribute("action") || window.location.pathname;
    fetch(url, { method: "POST", body: data, credentials: "same-origin",
                         headers: { "Accept": "application/json" } })
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        // Anything but our JSON (billing refused the change, the login expired) is a page: show it.
        if (type.indexOf("application/json") === -1) { window.location.href = response.url; return null; }
        return response.json();
      })
      .then(function (body) {
        if (!body) return;
        if (body.redirect) { window.location.href = body.redirect; return; }
        if (body.session) applyUpdate(body.session);
        if (body.ok) {
          flash(true, body.message);
          if (form.hasAttribute("data-reset")) form.reset();
        } else {
          showFormError(form, body.message);
          if (!form.querySelector("[data-form-error]")) flash(false, body.message);
        }
      })
      .catch(function () { flash(false, "Could not reach Switchboard; check your connection and try again."); })
      .then(function () { buttons.forEach(function (b) { b.disabled = false; }); });
  });

  document.querySelectorAll("time[datetime][data-local]").forEach(function (el) {
    el.textContent = formatTime(el.getAttribute("datetime"));
  });
  live = window.Switchboard.liveSocket(root.getAttribute("data-ws"), onMessage);
})();
