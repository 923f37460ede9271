// The queue: a whole row opens its ticket, changing a filter applies it at once, j/k move
// through the rows, and the rows, the tab counts and who is online update live.
//
// A ticket event says which ticket changed; the row itself comes from the server
// (/live/queue/rows/, the same markup the page renders: tickets.rows.row_html, escaped)
// with this page's filters, so a live row looks like every other row and a ticket the filters
// exclude is not shown. Rows are placed by the queue order's keys (data-priority, data-sla,
// data-waiting, data-id). After a reconnect the page re-reads itself, so nothing is missed.
"use strict";
(function () {
  var table = document.querySelector(".qtable");
  if (table) {
    table.addEventListener("click", function (event) {
      if (event.target.closest("a, button, input, select, [tabindex]")) return;
      var row = event.target.closest("tr[data-href]");
      if (row) window.location.assign(row.dataset.href);
    });
  }
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { filters.requestSubmit(); });
    });
    // Empty fields stay out of the address: shorter, shareable URLs.
    filters.addEventListener("formdata", function (event) {
      var empty = [];
      event.formData.forEach(function (value, key) { if (value === "") empty.push(key); });
      empty.forEach(function (key) { event.formData.delete(key); });
    });
  }

  var main = document.getElementById("queue");
  var tbody = document.getElementById("queue-rows");
  var Live = window.Live;
  if (!main || !tbody || !Live) return;

  var params = new URLSearchParams(location.search);
  var firstPage = main.dataset.firstPage === "1";
  var hasMore = main.dataset.more === "1";

  function rows() { return Array.prototype.slice.call(tbody.querySelectorAll("tr.qrow")); }

  function seedVersions() {
    rows().forEach(function (tr) { Live.seen(Number(tr.dataset.id), Number(tr.dataset.version)); });
  }
  seedVersions();

  // ---------------------------------------------------------------- keyboard: j, k, Enter, /

  var selected = null;

  function select(tr) {
    if (selected) selected.classList.remove("is-selected");
    selected = tr;
    if (tr) {
      tr.classList.add("is-selected");
      tr.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var list = rows();
    if (!list.length) return;
    var index = selected ? list.indexOf(selected) : -1;
    index = index < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[index]);
  }

  Live.key("j", function () { move(1); });
  Live.key("k", function () { move(-1); });
  function open(event) {
    // Enter on a focused link or button keeps its own meaning.
    if (!selected || (event.target !== document.body && event.target !== selected)) return false;
    location.assign(selected.dataset.href);
  }
  Live.key("Enter", open);
  Live.key("o", open);
  Live.key("/", function () {
    var search = document.querySelector(".f-search");
    if (search) search.focus();
  });

  // ---------------------------------------------------------------- placing rows

  // The queue order: priority desc, SLA due asc, waiting since asc (never waiting last), id.
  function key(tr) {
    return [
      Number(tr.dataset.priority),
      Number(tr.dataset.sla),
      tr.dataset.waiting ? Number(tr.dataset.waiting) : Infinity,
      Number(tr.dataset.id),
    ];
  }

  function before(a, b) {
    if (a[0] !== b[0]) return a[0] > b[0];
    if (a[1] !== b[1]) return a[1] < b[1];
    if (a[2] !== b[2]) return a[2] < b[2];
    return a[3] < b[3];
  }

  function place(tr) {
    var k = key(tr);
    var list = rows();
    var next = null;
    for (var i = 0; i < list.length; i += 1) {
      if (before(k, key(list[i]))) { next = list[i]; break; }
    }
    // On a page after the first, a row above the page's first belongs to an earlier page;
    // with more pages after this one, a row below the last belongs to a later one.
    if (list.length && !firstPage && next === list[0]) return false;
    if (list.length && hasMore && next === null) return false;
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    tbody.insertBefore(tr, next);
    return true;
  }

  function rowFrom(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim(); // server-rendered by Django, every value escaped
    return template.content.querySelector("tr");
  }

  function apply(data) {
    data.rows.forEach(function (item) {
      var old = document.getElementById("t" + item.id);
      if (item.html === null) {
        if (old) {
          if (old === selected) select(null);
          old.remove();
        }
        return;
      }
      if (old && Number(old.dataset.version) > item.version) return;
      var tr = rowFrom(item.html);
      if (!tr) return;
      var wasSelected = old !== null && old === selected;
      if (old) old.remove();
      if (place(tr)) {
        if (!old) tr.classList.add("is-new");
        if (wasSelected) select(tr);
        Live.seen(item.id, item.version);
      } else if (wasSelected) {
        select(null);
      }
    });
    showCounts(data.counts);
  }

  function showCounts(counts) {
    document.querySelectorAll(".tab[data-status]").forEach(function (tab) {
      var value = counts[tab.dataset.status];
      if (value == null) return;
      var badge = tab.querySelector(".count");
      if (!badge) {
        badge = document.createElement("span");
        badge.className = "count";
        tab.append(" ", badge);
      }
      if (badge.textContent !== value) {
        badge.textContent = value;
        badge.classList.remove("is-bumped");
        void badge.offsetWidth; // restart the animation
        badge.classList.add("is-bumped");
      }
    });
  }

  // ---------------------------------------------------------------- live ticket events

  // Cheap checks on the event's own fields, so a row the filters exclude costs no request.
  // Anything these cannot judge (channel, tag, search, team slugs) asks the server.
  function mightMatch(t) {
    var simple = {
      priority: function (v) { return v.split(",").indexOf(t.priority) >= 0; },
      topic: function (v) { return v.split(",").indexOf(t.topic) >= 0; },
      language: function (v) {
        return v.split(",").some(function (x) { return (x === "none" ? "" : x) === (t.language || ""); });
      },
      team: function (v) {
        return v.split(",").some(function (x) {
          if (x === "none") return t.team_id === null;
          if (/^\d+$/.test(x)) return Number(x) === t.team_id;
          return true; // a slug: the server knows
        });
      },
      assignee: function (v) {
        return v.split(",").some(function (x) {
          if (x === "me") return t.assignee_id === Live.me;
          if (x === "none") return t.assignee_id === null;
          return Number(x) === t.assignee_id;
        });
      },
    };
    var ok = true;
    Object.keys(simple).forEach(function (name) {
      var value = params.get(name);
      if (value && !simple[name](value)) ok = false;
    });
    return ok;
  }

  var wanted = new Set();
  var inFlight = false;

  function flush() {
    if (inFlight || !wanted.size) return;
    var ids = Array.from(wanted).slice(0, 100);
    ids.forEach(function (id) { wanted.delete(id); });
    var query = new URLSearchParams(params);
    query.delete("cursor");
    query.set("ids", ids.join(","));
    inFlight = true;
    Live.json(main.dataset.rowsUrl + "?" + query.toString())
      .then(apply)
      .catch(function (err) { console.warn("queue rows:", err.message); })
      .then(function () {
        inFlight = false;
        flush(); // whatever arrived meanwhile, in one more request
      });
  }

  Live.on("ticket", function (event) {
    var t = event.ticket;
    if (!Live.fresh(t.id, event.version)) return;
    var shown = document.getElementById("t" + t.id);
    // A "remove" carries only the id (the ticket left this agent's view): the counts may
    // move even when its row is not on this page, so it always asks.
    if (event.op !== "remove" && !shown && !mightMatch(t)) return;
    wanted.add(t.id);
    flush();
  });

  // ---------------------------------------------------------------- re-sync

  // The page itself, re-read: rows and counts exactly as a reload would show them, for
  // after a reconnect (events may have been missed) and once a minute (waiting times and
  // SLA deadlines move with the clock).
  var syncing = false;
  function resync() {
    if (syncing) return;
    syncing = true;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.statusText);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("queue-rows");
        if (!fresh) return;
        var keep = selected ? selected.dataset.id : null;
        tbody.replaceChildren.apply(tbody, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
          return document.importNode(n, true);
        }));
        var freshMain = doc.getElementById("queue");
        if (freshMain) hasMore = freshMain.dataset.more === "1";
        doc.querySelectorAll(".tab[data-status]").forEach(function (tab) {
          var mine = document.querySelector('.tab[data-status="' + tab.dataset.status + '"] .count');
          var theirs = tab.querySelector(".count");
          if (mine && theirs) mine.textContent = theirs.textContent;
        });
        selected = null;
        if (keep) select(document.getElementById("t" + keep));
        seedVersions();
      })
      .catch(function (err) { console.warn("queue re-sync:", err.message); })
      .then(function () { syncing = false; });
  }

  Live.on("open", function (info) { if (info.reconnected) resync(); });
  setInterval(function () { if (!document.hidden) resync(); }, 60000);

  // ---------------------------------------------------------------- who is online

  var strip = document.getElementById("team-now");
  var people = new Map();
  var LABELS = { online: "Online", away: "Away", offline: "Offline" };

  function drawPeople() {
    if (!strip) return;
    strip.replaceChildren();
    var list = Array.from(people.values()).filter(function (p) { return p.id !== Live.me; });
    var order = { online: 0, away: 1, offline: 2 };
    list.sort(function (a, b) { return order[a.presence] - order[b.presence] || a.name.localeCompare(b.name); });
    var online = list.filter(function (p) { return p.presence === "online"; }).length;
    var head = document.createElement("span");
    head.className = "team-now-head";
    head.textContent = online + " online";
    strip.appendChild(head);
    // Who can take work now, then who is away; offline people only in the count's title.
    var shown = list.filter(function (p) { return p.presence !== "offline"; });
    var offline = list.length - shown.length;
    head.title = offline ? offline + " offline" : "";
    var MAX = 15;
    shown.slice(0, MAX).forEach(function (p) {
      var chip = document.createElement("span");
      chip.className = "person presence-" + p.presence;
      chip.dataset.agent = String(p.id);
      chip.title = p.name + " · " + LABELS[p.presence] + (p.teams.length ? " · " + p.teams.join(", ") : "");
      var dot = document.createElement("span");
      dot.className = "presence-dot";
      var name = document.createElement("span");
      name.textContent = p.name;
      chip.append(dot, name);
      strip.appendChild(chip);
    });
    if (shown.length > MAX) {
      var more = document.createElement("span");
      more.className = "muted";
      more.textContent = "+" + (shown.length - MAX);
      strip.appendChild(more);
    }
    strip.hidden = list.length === 0;
  }

  function loadPeople() {
    Live.json(main.dataset.agentsUrl).then(function (data) {
      people.clear();
      data.agents.forEach(function (a) { people.set(a.id, { id: a.id, name: a.name, presence: a.presence, teams: a.teams, version: 0 }); });
      drawPeople();
    }).catch(function (err) { console.warn("who is online:", err.message); });
  }

  Live.on("presence", function (event) {
    var p = people.get(event.agent.id);
    if (!p) {
      p = { id: event.agent.id, name: event.agent.name, presence: event.status, teams: [], version: 0 };
      people.set(p.id, p);
    }
    if (event.version <= p.version) return;
    p.version = event.version;
    p.presence = event.status;
    drawPeople();
  });
  Live.on("open", loadPeople);
})();
