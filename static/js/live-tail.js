// The viewer's live tail: new matching events appear at the top of the list without a reload.
//
// It polls the list API with since_id (events with a larger id, oldest first) every POLL_MS. The first request
// (no tail token) is recorded as a REQUEST event and answers a token; the polls carry it and are not recorded
// one by one. An event may commit a moment after one with a larger id, so each poll re-reads from the newest
// id seen REREAD_MS ago, and rows already shown are skipped by id. No framework, no long-lived connection.
(function () {
  "use strict";
  var POLL_MS = 1500, REREAD_MS = 10000, LIMIT = 200, MAX_ROWS = 500;
  var box = document.getElementById("live-tail");
  if (!box) return;
  var button = document.getElementById("tail-toggle");
  var status = document.getElementById("tail-status");
  var timer = null, token = null, failures = 0, added = 0, generation = 0;
  var seen = new Set();
  var history = [];  // [time, newest id seen then], oldest first
  var base = 0, catchUp = null;  // catchUp: a full page came back, read on from its last id
  var newest = parseInt(box.dataset.since, 10) || 0;
  var zone = box.dataset.timezone || "UTC";

  function say(text) { status.textContent = text; }

  function since() {
    // The newest id seen at least REREAD_MS ago: later ids are read again, in case one committed late.
    var cutoff = Date.now() - REREAD_MS;
    while (history.length && history[0][0] <= cutoff) base = history.shift()[1];
    return base;
  }

  function stamp(iso) {
    var parts = {};
    new Intl.DateTimeFormat("en-GB", {timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"})
      .formatToParts(new Date(iso)).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + ":" + parts.second;
  }

  function cell(row, label, className) {
    var td = document.createElement("td");
    td.dataset.label = label;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function badge(text, className, title) {
    var span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    span.title = title;
    return span;
  }

  function render(item) {
    var row = document.createElement("tr");
    row.dataset.id = item.id;
    row.dataset.status = item.status;
    row.className = "tail-new";
    var time = cell(row, "Time", "text-nowrap"), link = document.createElement("a");
    link.href = box.dataset.detail.replace(/0$/, item.id);
    var t = document.createElement("time");
    t.dateTime = item.timestamp;
    t.textContent = stamp(item.timestamp);
    link.appendChild(t);
    time.appendChild(link);
    var ago = document.createElement("div");
    ago.className = "small text-body-secondary";
    ago.textContent = "just now";
    time.appendChild(ago);
    cell(row, "User").textContent = item.actor;
    cell(row, "Action", "text-mono").textContent = item.action_type;
    cell(row, "Category").textContent = item.category;
    cell(row, "Resource", "text-mono").textContent = item.resource_type + (item.resource_id ? " #" + item.resource_id : "");
    var description = cell(row, "Description", "col-description");
    description.textContent = item.description + " ";
    if (item.severity) {
      description.appendChild(badge(item.severity, "badge rounded-pill badge-severity badge-severity-" + item.severity_color,
        "Severity: " + item.severity));
    }
    cell(row, "IP", "text-mono text-nowrap").textContent = item.ip_address || "";
    var badgeCell = cell(row, "Status");
    var b = badge(item.status, "badge badge-status badge-status-" + item.status_color, "Status: " + item.status);
    b.dataset.status = item.status;
    badgeCell.appendChild(b);
    return row;
  }

  function tbody() {
    var table = document.querySelector('[data-testid="audit-table"]');
    if (!table) {
      var template = document.getElementById("tail-table");
      var empty = document.querySelector('[data-testid="empty"]');
      if (empty) empty.remove();
      box.after(template.content.cloneNode(true));
      table = document.querySelector('[data-testid="tail-table"]');
      table.dataset.testid = "audit-table";
    }
    return table.tBodies[0];
  }

  function show(items) {
    var fresh = items.filter(function (item) { return !seen.has(item.id); });
    if (!fresh.length) return;
    var body = tbody();
    fresh.forEach(function (item) {
      var row = render(item);  // first: an item that cannot be drawn is not marked as shown
      seen.add(item.id);
      newest = Math.max(newest, item.id);
      body.insertBefore(row, body.firstChild);
    });
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    added += fresh.length;
    say("Live tail on: " + added + " new event" + (added === 1 ? "" : "s") + ", newest first.");
  }

  function url(from) {
    var query = box.dataset.query ? box.dataset.query + "&" : "";
    return box.dataset.api + "?" + query + "since_id=" + from + "&limit=" + LIMIT + (token ? "&tail=" + encodeURIComponent(token) : "");
  }

  function poll() {
    var run = generation;  // a stop (or a stop and a start) while this request is out makes its answer stale
    var from = catchUp !== null ? catchUp : since();
    catchUp = null;
    history.push([Date.now(), newest]);
    fetch(url(from), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.json().then(function (body) { return {ok: response.ok, code: response.status, body: body}; });
      })
      .then(function (answer) {
        if (!timer || run !== generation) return;
        if (answer.code === 422 && answer.body.errors && answer.body.errors.tail) {
          token = null;  // expired or stale: start again (recorded)
        } else if (!answer.ok) {
          throw new Error(answer.body.message || ("HTTP " + answer.code));
        } else {
          var data = answer.body.data;
          token = data.tail_token;
          show(data.items);
          if (!data.total_is_exact && data.items.length) catchUp = data.items[data.items.length - 1].id;
          failures = 0;
          if (!added) say("Live tail on: waiting for new events.");
        }
        timer = setTimeout(poll, catchUp !== null ? 0 : POLL_MS);
      })
      .catch(function (error) {
        if (!timer || run !== generation) return;
        failures += 1;
        say("Live tail: could not reach the server (" + error.message + "); retrying.");
        timer = setTimeout(poll, Math.min(POLL_MS * Math.pow(2, failures), 30000));
      });
  }

  function start() {
    document.querySelectorAll('[data-testid="audit-table"] tbody tr').forEach(function (row) {
      seen.add(parseInt(row.dataset.id, 10));
    });
    history = [];
    base = newest;
    catchUp = null;
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop live tail";
    say("Live tail on: waiting for new events.");
    timer = setTimeout(poll, 0);
  }

  function stop() {
    generation += 1;
    clearTimeout(timer);
    timer = null;
    token = null;
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Live tail";
    say("Live tail off.");
  }

  button.addEventListener("click", function () { if (timer) stop(); else start(); });
})();
