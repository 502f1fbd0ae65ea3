// Live conversation pages (/conversations/ and /conversations/<id>/). The server renders the page; a websocket
// (whatsapp/conversation_consumers.py) then sends a snapshot on connect and "message.update" for every new
// message and status change, which this script writes into the page: new bubbles and ticks on a conversation,
// rows moved to the top with their unread badge on the list. It reconnects with backoff, sends a heartbeat,
// and stops for good on 4404/4403. Forms marked data-async / data-send-form are posted with fetch (JSON back).
(function () {
  "use strict";
  var listRoot = document.querySelector("[data-live-conversations]");
  var threadRoot = document.querySelector("[data-live-conversation]");
  var root = listRoot || threadRoot;
  if (!root) return;

  var conversationId = threadRoot ? Number(threadRoot.getAttribute("data-conversation-id")) : null;
  var RANK = { queued: 0, sending: 0, sent: 1, delivered: 2, read: 3, failed: 4, received: 0 };
  var TICKS = { queued: "🕓 Queued", sending: "🕓 Queued", sent: "✓ Sent", delivered: "✓✓ Delivered",
                read: "✓✓ Read", failed: "⚠ Failed" };
  var TYPE_ICONS = { image: "📷", document: "📄", audio: "🎤", video: "🎥", sticker: "🏷" };

  function formatTime(iso, withSeconds) {
    if (!iso) return "";
    var date = new Date(iso);
    if (isNaN(date)) return iso;
    var options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
    if (withSeconds) options.second = "2-digit";
    return date.toLocaleString(undefined, options);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // --- one conversation ------------------------------------------------------------------------------------
  function bodyOf(m) {
    var body = el("div", "conv-body");
    body.setAttribute("data-body", "");
    if (m.type === "location" && m.location) {
      var a = el("a", null, "📍 " + (m.location.name || "Location") + " (" + m.location.latitude.toFixed(5) + ", " +
                 m.location.longitude.toFixed(5) + ")");
      a.href = "https://www.openstreetmap.org/?mlat=" + m.location.latitude + "&mlon=" + m.location.longitude;
      a.rel = "noopener"; a.target = "_blank";
      body.appendChild(a);
    } else if (m.type === "contact" && m.contact_card) {
      body.textContent = "👤 " + (m.contact_card.name || "Contact") + (m.contact_card.phone ? " · " + m.contact_card.phone : "");
    } else if (m.type === "reaction") {
      body.textContent = "Reacted " + (m.reaction || "");
    } else if (m.media) {
      var media = el("span", "conv-media", (TYPE_ICONS[m.type] || "📎") + " " + (m.media.filename || m.type));
      if (m.media.error) media.appendChild(el("em", "error", " (" + m.media.error + ")"));
      body.appendChild(media);
      if (m.caption || m.text) body.appendChild(el("span", "conv-caption", m.caption || m.text));
    } else {
      body.textContent = m.text || m.caption || "";
    }
    return body;
  }

  function bubbleFor(m) {
    var li = el("li", "conv-msg conv-" + m.direction);
    li.setAttribute("data-message-id", m.id);
    li.setAttribute("data-testid", "message-" + m.id);
    li.setAttribute("data-status", m.status);
    li.setAttribute("data-status-history", m.status);
    var bubble = el("div", "conv-bubble");
    if (m.direction === "in" && m.sender_unresolved) {
      var hidden = el("p", "conv-hidden-number", "WhatsApp hides this sender's number");
      hidden.setAttribute("data-testid", "hidden-number");
      bubble.appendChild(hidden);
    }
    bubble.appendChild(bodyOf(m));
    var meta = el("div", "conv-meta");
    var time = el("time", null, formatTime(m.created_at));
    time.setAttribute("datetime", m.created_at);
    meta.appendChild(time);
    if (document.querySelector("form[data-send-form]") && m.type !== "reaction") {
      var reply = el("button", "conv-reply-button", "Reply");
      reply.type = "button";
      reply.setAttribute("data-reply-to", m.id);
      reply.setAttribute("data-testid", "reply-to-" + m.id);
      reply.setAttribute("aria-label", "Reply to this message");
      meta.appendChild(document.createTextNode(" "));
      meta.appendChild(reply);
    }
    if (m.direction === "out") {
      var tick = el("span", "conv-tick");
      tick.setAttribute("data-tick", "");
      meta.appendChild(document.createTextNode(" "));
      meta.appendChild(tick);
    }
    bubble.appendChild(meta);
    var reason = el("p", "error conv-reason hidden");
    reason.setAttribute("data-reason", "");
    bubble.appendChild(reason);
    li.appendChild(bubble);
    return li;
  }

  function applyStatus(li, m) {
    var current = li.getAttribute("data-status");
    // Updates may arrive out of order (a snapshot after a live update): never move a message backwards.
    if (current && current !== m.status && RANK[m.status] < RANK[current]) return;
    if (current !== m.status) {
      var history = (li.getAttribute("data-status-history") || "").split(" ").filter(Boolean);
      if (history[history.length - 1] !== m.status) history.push(m.status);
      li.setAttribute("data-status-history", history.join(" "));
    }
    li.setAttribute("data-status", m.status);
    var tick = li.querySelector("[data-tick]");
    if (tick) {
      tick.className = "conv-tick t-" + m.status;
      tick.textContent = TICKS[m.status] || m.status;
      tick.title = m.status;
    }
    var reason = li.querySelector("[data-reason]");
    if (reason) {
      var show = m.status === "failed" && m.failure_reason;
      reason.textContent = show ? m.failure_reason : "";
      reason.classList.toggle("hidden", !show);
    }
  }

  // An automatic message's mark: which rule or bot sent it (the payload's `automation`).
  function applyAutomation(li, m) {
    if (!m.automation || li.querySelector("[data-automation]")) return;
    var mark = el("p", "conv-automatic muted", m.automation.label);
    mark.setAttribute("data-automation", "");
    mark.setAttribute("data-testid", "automatic-" + m.id);
    var bubble = li.querySelector(".conv-bubble");
    bubble.insertBefore(mark, bubble.firstChild);
  }

  function upsertMessage(m) {
    if (!threadRoot || m.conversation_id !== conversationId) return;
    var list = document.querySelector("[data-message-list]");
    var li = list.querySelector('[data-message-id="' + m.id + '"]');
    if (!li) {
      li = bubbleFor(m);
      // Oldest first: place it after the last message created no later than it.
      var after = null;
      list.querySelectorAll("[data-message-id]").forEach(function (other) {
        var time = other.querySelector("time");
        var at = time ? time.getAttribute("datetime") : "";
        if (at <= m.created_at) after = other;
      });
      list.insertBefore(li, after ? after.nextSibling : list.firstChild);
      var empty = document.querySelector("[data-no-messages]");
      if (empty) empty.classList.add("hidden");
      if (!li.nextSibling) li.scrollIntoView({ block: "nearest" });
    }
    applyAutomation(li, m);
    applyStatus(li, m);
  }

  // --- the list ----------------------------------------------------------------------------------------------
  function setField(row, field, text) {
    var node = row.querySelector('[data-field="' + field + '"]');
    if (node) node.textContent = text;
    return node;
  }

  function rowFor(c) {
    var li = el("li", "conv-row");
    li.setAttribute("data-conversation-id", c.id);
    li.setAttribute("data-testid", "conversation-row-" + c.id);
    var a = el("a");
    a.href = "/conversations/" + c.id + "/";
    var title = el("span", "conv-title"); title.setAttribute("data-field", "title");
    var badge = el("span", "conv-badge hidden"); badge.setAttribute("data-field", "unread");
    badge.setAttribute("data-testid", "unread-" + c.id); badge.setAttribute("aria-label", "unread messages");
    var preview = el("span", "conv-preview muted"); preview.setAttribute("data-field", "preview");
    var time = el("time", "conv-time muted"); time.setAttribute("data-field", "time");
    var inbox = el("span", "conv-inbox muted");
    var status = el("span", "pill"); status.setAttribute("data-field", "status");
    status.setAttribute("data-testid", "status-" + c.id);
    var assignee = el("span"); assignee.setAttribute("data-field", "assignee");
    assignee.setAttribute("data-testid", "assignee-" + c.id);
    inbox.appendChild(status); inbox.appendChild(document.createTextNode(" ")); inbox.appendChild(assignee);
    [title, badge, preview, time, inbox].forEach(function (node) { a.appendChild(node); });
    li.appendChild(a);
    return li;
  }

  // The inbox's filters (mine / unassigned / all, a status): a conversation that no longer matches leaves the list.
  var memberNamesNode = document.getElementById("member-names");
  var memberNames = memberNamesNode ? JSON.parse(memberNamesNode.textContent) : {};
  var STATUS_LABELS = { open: "Open", pending: "Pending", closed: "Closed" };

  function assigneeLabel(c) {
    if (!c.assignee_id) return "Unassigned";
    return memberNames[String(c.assignee_id)] || "a former member";
  }

  function matchesFilters(c) {
    if (!listRoot || c.status === undefined) return true;
    var wanted = listRoot.getAttribute("data-status-filter");
    if (wanted && wanted !== "any" && c.status !== wanted) return false;
    var assigned = listRoot.getAttribute("data-assigned");
    var known = c.assignee_id && memberNames[String(c.assignee_id)];
    if (assigned === "mine") return String(c.assignee_id) === listRoot.getAttribute("data-me");
    if (assigned === "unassigned") return !known;
    return true;
  }

  function applyInbox(scope, c) {
    if (c.status === undefined) return;
    var status = scope.querySelector('[data-field="status"]');
    if (status) { status.textContent = STATUS_LABELS[c.status] || c.status; status.className = "pill st-" + c.status; }
    var assignee = scope.querySelector('[data-field="assignee"]');
    if (assignee) assignee.textContent = threadRoot && c.assignee_id ? "Assigned to " + assigneeLabel(c) : assigneeLabel(c);
  }

  function applySummary(c) {
    if (!listRoot || !c || !c.last_message_at && c.unread_count === undefined) return;
    var row = document.querySelector('[data-conversation-id="' + c.id + '"]');
    var list = document.querySelector('[data-conv-list="' + c.session_id + '"]');
    if (!matchesFilters(c)) {
      if (row) row.parentNode.removeChild(row);
      return;
    }
    if (!row) {
      if (!list) return;  // a session added since the page was rendered
      row = rowFor(c);
      list.appendChild(row);
      var empty = list.parentNode.querySelector("[data-conv-empty]");
      if (empty) empty.classList.add("hidden");
    }
    if (c.title) setField(row, "title", c.title);
    setField(row, "preview", c.last_message_preview || "");
    var time = setField(row, "time", formatTime(c.last_message_at));
    if (time && c.last_message_at) time.setAttribute("datetime", c.last_message_at);
    applyInbox(row, c);
    var badge = row.querySelector('[data-field="unread"]');
    if (badge) { badge.textContent = c.unread_count; badge.classList.toggle("hidden", !c.unread_count); }
    if (c.last_message_at) row.setAttribute("data-last-at", c.last_message_at);
    reorder(row.parentNode);
  }

  function reorder(list) {
    var rows = Array.prototype.slice.call(list.querySelectorAll(":scope > [data-conversation-id]"));
    rows.sort(function (a, b) {
      var x = a.getAttribute("data-last-at") || "", y = b.getAttribute("data-last-at") || "";
      // ISO strings of one server sort as times; newest first.
      return x < y ? 1 : x > y ? -1 : 0;
    });
    rows.forEach(function (row) { list.appendChild(row); });
  }

  function onSynced(data) {
    if (data.ok) {
      flash(true, "Synced " + data.contacts + " contact" + (data.contacts === 1 ? "" : "s") + " (" +
            data.contacts_created + " new) and " + data.groups + " group" + (data.groups === 1 ? "" : "s") +
            ". Reload to see them in the contact list.");
    } else {
      flash(false, "Contact sync failed: " + data.error);
    }
  }

  // --- the tabs' figures (mine / unassigned / all): asked again, at most once a second, after any change --------
  var countsTimer = null;
  function refreshCounts() {
    if (!listRoot || countsTimer || !window.fetch) return;
    countsTimer = setTimeout(function () {
      countsTimer = null;
      var status = listRoot.getAttribute("data-status-filter");
      var query = status && status !== "any" ? "?status=" + encodeURIComponent(status) : "";
      fetch("/api/v1/conversations/counts" + query, { credentials: "same-origin",
                                                      headers: { "Accept": "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (!body || !body.data) return;
          ["mine", "unassigned", "all"].forEach(function (name) {
            var tab = listRoot.querySelector('[data-tab="' + name + '"]');
            var figures = body.data[name];
            if (!tab || !figures) return;
            tab.querySelector("[data-tab-count]").textContent = "(" + figures.conversations + ")";
            var badge = tab.querySelector("[data-tab-unread]");
            badge.textContent = figures.unread_conversations;
            badge.classList.toggle("hidden", !figures.unread_conversations);
          });
        })
        .catch(function () {});
    }, 1000);
  }

  // --- read -------------------------------------------------------------------------------------------------
  // The open conversation was seen: on load and whenever an inbound message arrives while the page is visible.
  // A POST, never the page's GET (a GET changes nothing).
  var readPending = false;
  function markRead() {
    var form = document.querySelector("form[data-mark-read]");
    if (!form || readPending || document.visibilityState === "hidden" || !window.fetch) return;
    readPending = true;
    fetch(window.location.pathname, {
      method: "POST", body: new FormData(form), credentials: "same-origin", headers: { "Accept": "application/json" }
    }).catch(function () {}).then(function () { readPending = false; });
  }
  document.addEventListener("visibilitychange", markRead);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", markRead); else markRead();

  // The contact's typing (the number's show_contact_typing): "typing…" until they stop, send, or 25 s pass (WhatsApp
  // sends no news when a phone goes away mid-sentence).
  var typingTimer = null;
  function showContactTyping(on) {
    var node = document.querySelector("[data-contact-typing]");
    if (!node) return;
    node.hidden = !on;
    if (typingTimer) clearTimeout(typingTimer);
    typingTimer = on ? setTimeout(function () { node.hidden = true; }, 25000) : null;
  }

  // --- the websocket -----------------------------------------------------------------------------------------
  function onMessage(msg) {
    if (msg.type === "message.update") {
      if (msg.data.direction === "in") showContactTyping(false);
      upsertMessage(msg.data);
      applySummary(msg.data.conversation);
      refreshCounts();
      if (msg.data.direction === "in") markRead();
    } else if (msg.type === "conversation.snapshot") {
      (msg.data.messages || []).forEach(upsertMessage);
    } else if (msg.type === "conversations.snapshot") {
      (msg.data.conversations || []).forEach(applySummary);
    } else if (msg.type === "conversation.update") {
      applySummary(msg.data);
      refreshCounts();
      if (threadRoot && msg.data.id === conversationId) {
        var card = document.querySelector("[data-testid=inbox-card]");
        if (card) applyInbox(card, msg.data);
      }
    } else if (msg.type === "members.presence") {
      var names = (msg.data.online || []).map(function (id) { return memberNames[String(id)]; })
        .filter(Boolean).sort();
      var node = document.querySelector("[data-online-names]");
      if (node) node.textContent = names.length ? names.join(", ") : "nobody else";
    } else if (msg.type === "contacts.synced") {
      onSynced(msg.data);
    } else if (msg.type === "conversation.typing") {
      showContactTyping(msg.data.state === "composing");
    }
  }

  // --- forms posted without leaving the page -----------------------------------------------------------------
  function flash(ok, text) {
    var list = document.querySelector("[data-live-messages]");
    if (!list) return;
    var li = el("li", "msg " + (ok ? "success" : "error"), text);
    li.setAttribute("role", ok ? "status" : "alert");
    li.setAttribute("data-testid", "flash");
    list.innerHTML = "";
    list.appendChild(li);
  }

  function post(form, onBody) {
    var data = new FormData(form);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    // Not form.action: a field named "action" shadows that property.
    fetch(form.getAttribute("action") || window.location.pathname, {
      method: "POST", body: data, credentials: "same-origin", headers: { "Accept": "application/json" }
    })
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        // Anything but our JSON (billing refused the change, the login expired) is a page: show it.
        if (type.indexOf("application/json") === -1) { window.location.href = response.url; return null; }
        return response.json();
      })
      .then(function (body) { if (body) onBody(body); })
      .catch(function () { onBody({ ok: false, message: "Could not reach Switchboard; check your connection and try again." }); })
      .then(function () { buttons.forEach(function (b) { b.disabled = false; }); });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || event.defaultPrevented || !window.fetch) return;
    if (form.matches("form[data-send-form]")) {
      event.preventDefault();
      var error = form.querySelector("[data-send-error]");
      error.classList.add("hidden");
      post(form, function (body) {
        if (body.ok) {
          form.querySelector("textarea").value = "";
          var file = form.querySelector("input[type=file]");
          if (file) file.value = "";
          closePicker();
          setReply("", "");
          // A sent message ends "typing…" on WhatsApp by itself.
          if (pauseTimer) { clearTimeout(pauseTimer); pauseTimer = null; }
          typingSentAt = 0;
          if (body.message_data) upsertMessage(body.message_data);
        } else {
          error.textContent = body.message;
          error.classList.remove("hidden");
        }
      });
    } else if (form.matches("form[data-async]")) {
      event.preventDefault();
      post(form, function (body) {
        flash(body.ok, body.message);
        if (body.ok && form.hasAttribute("data-remove-row")) {
          var row = form.closest("tr");
          if (row) row.parentNode.removeChild(row);
        }
      });
    }
  });

  // --- canned replies in the composer: "/" then the code's first letters lists the matches; picking one puts its
  // text in the box (arrow down reaches the list, Escape closes it). "/code" sent alone is expanded by the server.
  var cannedNode = document.getElementById("canned-replies");
  var canned = cannedNode ? JSON.parse(cannedNode.textContent) : [];
  var picker = document.querySelector("[data-canned-picker]");
  var composer = document.querySelector("form[data-send-form] textarea");
  function closePicker() { if (picker) { picker.innerHTML = ""; picker.classList.add("hidden"); } }
  function openPicker() {
    if (!picker || !composer) return;
    var value = composer.value;
    if (value.charAt(0) !== "/" || /\s/.test(value)) { closePicker(); return; }
    var typed = value.slice(1).toLowerCase();
    var matches = canned.filter(function (r) { return r.code.indexOf(typed) === 0; }).slice(0, 8);
    picker.innerHTML = "";
    matches.forEach(function (reply) {
      var li = el("li");
      var button = el("button", "canned-option");
      button.type = "button";
      button.setAttribute("data-testid", "canned-option-" + reply.code);
      button.appendChild(el("strong", null, "/" + reply.code));
      button.appendChild(el("span", "muted", " " + reply.text.slice(0, 80)));
      button.addEventListener("click", function () {
        composer.value = reply.text;
        closePicker();
        composer.focus();
      });
      li.appendChild(button);
      picker.appendChild(li);
    });
    if (!matches.length) picker.appendChild(el("li", "muted", canned.length ? "No canned reply starts with that." :
                                                               "No canned replies yet."));
    picker.classList.remove("hidden");
  }
  // --- typing: while a member writes, the contact sees "typing…" (a composing state at most every 8 s, "paused"
  // after 4 s without a key or once the message is sent). Only when the number is connected (data-can-send).
  var typingSentAt = 0, pauseTimer = null;
  function typing(state) {
    var form = document.querySelector("form[data-send-form]");
    if (!form || form.getAttribute("data-can-send") !== "true" || !window.fetch) return;
    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    data.append("action", "typing");
    data.append("state", state);
    fetch(window.location.pathname, { method: "POST", body: data, credentials: "same-origin",
                                      headers: { "Accept": "application/json" } }).catch(function () {});
  }
  function stopTyping() {
    if (pauseTimer) { clearTimeout(pauseTimer); pauseTimer = null; }
    if (typingSentAt) { typingSentAt = 0; typing("paused"); }
  }
  if (composer) {
    composer.addEventListener("input", function () {
      if (!composer.value) { stopTyping(); return; }
      var now = Date.now();
      if (now - typingSentAt > 8000) { typingSentAt = now; typing("composing"); }
      if (pauseTimer) clearTimeout(pauseTimer);
      pauseTimer = setTimeout(stopTyping, 4000);
    });
    composer.addEventListener("blur", stopTyping);
  }

  if (composer && picker) {
    composer.addEventListener("input", openPicker);
    composer.addEventListener("keydown", function (event) {
      if (event.key === "Escape") closePicker();
      if (event.key === "ArrowDown" && !picker.classList.contains("hidden")) {
        var first = picker.querySelector("button");
        if (first) { event.preventDefault(); first.focus(); }
      }
    });
    picker.addEventListener("keydown", function (event) {
      var buttons = Array.prototype.slice.call(picker.querySelectorAll("button"));
      var at = buttons.indexOf(document.activeElement);
      if (event.key === "ArrowDown" && at < buttons.length - 1) { event.preventDefault(); buttons[at + 1].focus(); }
      if (event.key === "ArrowUp") { event.preventDefault(); (at > 0 ? buttons[at - 1] : composer).focus(); }
      if (event.key === "Escape") { closePicker(); composer.focus(); }
    });
  }

  // --- reply-to: "Reply" on a message quotes it in the next message sent from the box ------------------------------
  function setReply(id, text) {
    var form = document.querySelector("form[data-send-form]");
    if (!form) return;
    form.querySelector("[data-reply-field]").value = id || "";
    var bar = form.querySelector("[data-replying]");
    bar.querySelector("[data-replying-text]").textContent = text || "";
    bar.classList.toggle("hidden", !id);
    if (id && composer) composer.focus();
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-reply-to]");
    if (button) {
      var body = button.closest(".conv-bubble").querySelector("[data-body]");
      setReply(button.getAttribute("data-reply-to"), (body ? body.textContent : "").slice(0, 80));
    } else if (event.target.closest && event.target.closest("[data-reply-cancel]")) {
      setReply("", "");
    }
  });

  document.querySelectorAll("time[datetime][data-local]").forEach(function (node) {
    node.textContent = formatTime(node.getAttribute("datetime"));
  });
  var thread = document.querySelector("[data-message-list]");
  if (thread && thread.lastElementChild) thread.lastElementChild.scrollIntoView({ block: "nearest" });
  window.Switchboard.liveSocket(root.getAttribute("data-ws"), onMessage);
})();
