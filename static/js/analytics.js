// The Analytics page: draws the messages-per-day chart (uPlot, vendored under static/vendor/uplot) from the
// numbers the page carries, and keeps every figure live: the socket (/ws/analytics/) sends the dashboard's figures
// and the chart's days again whenever messages or sessions change.
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-socket][src*='analytics']");
  var holder = document.getElementById("per-day-chart");
  var trendNode = document.getElementById("analytics-trend");
  var trend = trendNode ? JSON.parse(trendNode.textContent) : [];
  var plot = null;

  function percent(value) { return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%"; }
  // Seconds as the page writes them (Python's 3.0 is "3.0", not "3").
  function seconds(value) { return value === null || value === undefined ? "–" : Number(value).toFixed(1); }
  var FORMATS = { "message_stats.delivery_rate": percent, "message_stats.read_rate": percent,
                  "webhook_health.success_rate": percent };

  function lookup(data, path) {
    return path.split(".").reduce(function (value, key) { return value == null ? value : value[key]; }, data);
  }

  function showFigures(data) {
    document.querySelectorAll("[data-figure]").forEach(function (node) {
      var path = node.getAttribute("data-figure");
      var value = lookup(data, path);
      var format = FORMATS[path] || (/_seconds$/.test(path) ? seconds : null);
      var text = format ? format(value) : (value === null || value === undefined ? "–" : String(value));
      if (node.textContent !== text) node.textContent = text;
    });
  }

  function cell(text, label) {
    var td = document.createElement("td");
    td.textContent = text;
    if (label) td.setAttribute("data-label", label);
    return td;
  }

  function fillTable(name, rows, columns) {
    var body = document.querySelector("[data-table='" + name + "'] tbody");
    if (!body || !rows) return;
    body.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      columns.forEach(function (column) { tr.appendChild(cell(row[column[0]], column[1])); });
      body.appendChild(tr);
    });
  }

  function chartData(rows) {
    var xs = [], sent = [], received = [], failed = [];
    rows.forEach(function (row) {
      xs.push(Date.parse(row.date + "T12:00:00Z") / 1000);
      sent.push(row.sent); received.push(row.received); failed.push(row.failed);
    });
    return [xs, sent, received, failed];
  }

  function draw() {
    if (!holder || !window.uPlot) return;
    var width = Math.max(holder.clientWidth, 200);
    var data = chartData(trend);
    if (plot) { plot.setData(data); plot.setSize({ width: width, height: 240 }); return; }
    plot = new window.uPlot({
      width: width, height: 240,
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      series: [
        { label: "Date",
          value: function (u, v) { return v == null ? "" : new Date(v * 1000).toISOString().slice(0, 10); } },
        { label: "Sent", stroke: "#0f7b5f", width: 2, fill: "rgba(15,123,95,0.08)" },
        { label: "Received", stroke: "#175cd3", width: 2 },
        { label: "Failed", stroke: "#b42318", width: 2, dash: [6, 4] }
      ]
    }, data, holder);
  }

  function showTrend(rows) {
    trend = rows;
    fillTable("trend", rows, [["date", "Date"], ["sent", "Sent"], ["received", "Received"], ["failed", "Failed"]]);
    draw();
  }

  function showHeatmap(cells) {
    var table = document.querySelector("[data-table='heatmap'] tbody");
    if (!table || !cells) return;
    var busiest = cells.reduce(function (max, c) { return Math.max(max, c.sent + c.received); }, 0) || 1;
    cells.forEach(function (c) {
      var row = table.rows[c.weekday];
      var td = row && row.cells[c.hour + 1];
      if (!td) return;
      var total = c.sent + c.received;
      td.textContent = total;
      td.className = "heat-" + Math.round(4 * total / busiest);
    });
  }

  function show(message) {
    var data = message.dashboard;
    showFigures(data);
    fillTable("top_contacts", data.top_contacts, [["name", "Contact"], ["sent", "Sent"], ["received", "Received"]]);
    fillTable("failures", data.message_stats.failures_by_reason, [["reason", "Reason"], ["count", "Messages"]]);
    showHeatmap(data.hourly_activity);
    if (message.trend) showTrend(message.trend);
  }

  function connect() {
    var state = document.querySelector("[data-live-state]");
    var query = "?days=" + encodeURIComponent(script.getAttribute("data-days") || "30") +
                "&session=" + encodeURIComponent(script.getAttribute("data-session") || "");
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(proto + window.location.host + script.getAttribute("data-socket") + query);
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "analytics.update") show(message.data);
    };
    socket.onopen = function () { if (state) state.textContent = "Updated live"; };
    socket.onclose = function (event) {
      if (event.code === 4403 || event.code === 4404) { if (state) state.textContent = "Live updates are off"; return; }
      if (state) state.textContent = "Reconnecting…";
      window.setTimeout(connect, 3000);
    };
  }

  draw();
  window.addEventListener("resize", function () { draw(); });
  connect();
})();
