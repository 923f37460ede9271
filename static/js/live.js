// The agent's live socket (/ws/agent/), shared by every page, and what every page has:
// presence (chosen, idle, back), notices, the optional sound and desktop notification when a
// ticket is assigned to me, and the global keys (n, ?).
//
// Pages use window.Live:
//   Live.on(type, fn)          events by type: "ticket", "message", "notice", "presence",
//                              "viewing", "typing"; and "open" ({reconnected}) after each
//                              connect, so a page re-syncs what it shows.
//   Live.send(frame)           sent now, or when the socket is next open.
//   Live.onOpen(frame)         a frame to send on every (re)connect (listen, watch).
//   Live.fresh(id, version)    true once per newer version of a ticket; older and repeated
//                              versions are dropped (events can arrive twice or late).
//   Live.seen(id, version)     what the page rendered, so events about it are not replayed.
//   Live.toast(text, kind, link)
//   Live.json(url, options)    fetch with the session and the CSRF token; JSON or an error.
// Nothing here builds markup from data: text goes in with textContent.
"use strict";
(function () {
  var body = document.body;
  var me = Number(body.dataset.agent || 0);
  if (!me) return;

  var handlers = {};
  var openFrames = [];
  var outbox = [];
  var versions = new Map();
  var socket = null;
  var attempts = 0;
  var everOpen = false;
  var stopped = false;
  var pingTimer = null;
  var config = { ping: 25, idle: 600, viewing_ttl: 60, typing_ttl: 6 };
  var stateNode = document.getElementById("live-state");

  function on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); }

  function emit(type, data) {
    (handlers[type] || []).forEach(function (fn) {
      try { fn(data); } catch (err) { console.error("live handler for " + type, err); }
    });
  }

  function setState(state, label) {
    if (!stateNode) return;
    stateNode.dataset.state = state;
    stateNode.textContent = label;
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
    // Only state worth keeping waits for the next connection; a ping or "typing" from a
    // minute ago would be wrong by then.
    else if (frame.type === "idle" || frame.type === "active") outbox.push(frame);
  }

  function onOpen(frame) {
    openFrames.push(frame);
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function fresh(id, version) {
    if (version == null) return true;
    var known = versions.get(id);
    if (known != null && version <= known) return false;
    versions.set(id, version);
    return true;
  }

  function seen(id, version) {
    var known = versions.get(id);
    if (known == null || version > known) versions.set(id, version);
  }

  function connect() {
    if (stopped) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/agent/");
    setState("connecting", everOpen ? "Reconnecting…" : "Connecting…");
    socket.addEventListener("open", function () {
      attempts = 0;
      openFrames.forEach(function (f) { socket.send(JSON.stringify(f)); });
      outbox.splice(0).forEach(function (f) { socket.send(JSON.stringify(f)); });
      setState("live", "Live");
      var reconnected = everOpen;
      everOpen = true;
      emit("open", { reconnected: reconnected });
    });
    socket.addEventListener("message", function (msg) {
      var data;
      try { data = JSON.parse(msg.data); } catch (err) { return; }
      if (data.type === "batch") data.events.forEach(dispatch);
      else dispatch(data);
    });
    socket.addEventListener("close", function (event) {
      clearInterval(pingTimer);
      socket = null;
      if (event.code === 4401 || event.code === 4403) {
        // Signed out (here or in another tab), or not an agent: reconnecting cannot help.
        stopped = true;
        setState("off", event.code === 4401 ? "Signed out" : "No access");
        if (event.code === 4401) toast("You are signed out. Sign in again to keep working.", "error", { href: "/login/?next=" + encodeURIComponent(location.pathname + location.search), text: "Sign in" });
        return;
      }
      setState("offline", "Offline — reconnecting");
      // Exponential backoff with jitter, so a restarted server is not hit by every agent at once.
      var delay = Math.min(30000, 500 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
      if (event.code === 4429) delay = 30000;
      attempts += 1;
      setTimeout(connect, delay);
    });
  }

  function dispatch(data) {
    switch (data.type) {
      case "hello":
        Object.assign(config, data.config || {});
        clearInterval(pingTimer);
        pingTimer = setInterval(function () { send({ type: "ping" }); }, config.ping * 1000);
        showPresence(data.agent.presence);
        emit("hello", data);
        break;
      case "pong":
        break;
      case "error":
        console.warn("live:", data.code, data.message);
        emit("error", data);
        break;
      default:
        emit(data.type, data);
    }
  }

  // ---------------------------------------------------------------- fetch with the session

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function json(url, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    if (options.body) {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = csrfToken();
    }
    return fetch(url, {
      method: options.method || "GET",
      credentials: "same-origin",
      headers: headers,
      body: options.body ? JSON.stringify(options.body) : undefined,
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.message) || response.statusText);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  // ---------------------------------------------------------------- toasts

  function toast(text, kind, link) {
    var box = document.querySelector(".toasts");
    if (!box) {
      box = document.createElement("div");
      box.className = "toasts";
      box.setAttribute("role", "status");
      box.setAttribute("aria-live", "polite");
      body.appendChild(box);
    }
    var node = document.createElement("div");
    node.className = "toast toast-" + (kind || "info");
    var span = document.createElement("span");
    span.textContent = text;
    node.appendChild(span);
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      a.className = "toast-link";
      node.appendChild(a);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { node.remove(); });
    node.appendChild(close);
    box.appendChild(node);
    if (kind !== "error") setTimeout(function () { node.remove(); }, 8000);
    trimToasts(box);
    return node;
  }

  // A storm's SLA sweep can send dozens of notices at once: a stack of them covered the whole
  // queue. Only the newest few stay; SLA warnings go first, then news, errors (signed out,
  // a failed change) last. Nothing is lost: the rows show each ticket's SLA state.
  var MAX_TOASTS = 4;
  var DROP_FIRST = ["toast-warning", "toast-info", "toast-success", "toast-error"];

  function trimToasts(box) {
    while (box.children.length > MAX_TOASTS) {
      var oldest = null;
      for (var i = 0; i < DROP_FIRST.length && !oldest; i++) {
        oldest = box.querySelector("." + DROP_FIRST[i]);
      }
      (oldest || box.firstElementChild).remove();
    }
  }

  // ---------------------------------------------------------------- presence

  var presenceSelect = document.getElementById("presence");
  var presenceWrap = document.getElementById("presence-wrap");

  function showPresence(status) {
    if (!status) return;
    body.dataset.presence = status;
    if (presenceSelect) presenceSelect.value = status;
    if (presenceWrap) presenceWrap.className = "presence presence-" + status;
  }

  if (presenceSelect) {
    presenceSelect.addEventListener("change", function () {
      var wanted = presenceSelect.value;
      json(presenceSelect.dataset.url, { method: "POST", body: { status: wanted } })
        .then(function () { showPresence(wanted); })
        .catch(function (err) {
          showPresence(body.dataset.presence);
          toast("Status not changed: " + err.message, "error");
        });
    });
  }

  on("presence", function (event) {
    if (event.agent.id === me) showPresence(event.status);
  });

  // Idle: no keyboard or mouse in any tab of this browser for config.idle seconds. Tabs
  // share the last activity through localStorage, so a background tab does not mark an
  // agent away who is busy in another one.
  var ACTIVITY_KEY = "helpdesk.activity";
  var lastActivity = Date.now();
  var idleSent = false;
  var lastStored = 0;

  function activity() {
    lastActivity = Date.now();
    if (lastActivity - lastStored > 5000) {
      lastStored = lastActivity;
      try { localStorage.setItem(ACTIVITY_KEY, String(lastActivity)); } catch (err) { /* private mode */ }
    }
    if (idleSent) {
      idleSent = false;
      send({ type: "active" });
    }
  }
  ["keydown", "mousedown", "mousemove", "wheel", "touchstart", "focus"].forEach(function (name) {
    window.addEventListener(name, activity, { passive: true });
  });
  setInterval(function () {
    var shared = 0;
    try { shared = Number(localStorage.getItem(ACTIVITY_KEY) || 0); } catch (err) { /* ignore */ }
    var last = Math.max(lastActivity, shared);
    if (!idleSent && Date.now() - last > config.idle * 1000) {
      idleSent = true;
      send({ type: "idle" });
    }
  }, 15000);

  // ---------------------------------------------------------------- notices and alerts

  var ALERTS_KEY = "helpdesk.alerts";
  var alertsButton = document.getElementById("alerts-toggle");
  var audio = null;

  function alertsOn() {
    try { return localStorage.getItem(ALERTS_KEY) === "on"; } catch (err) { return false; }
  }

  function showAlerts() {
    if (!alertsButton) return;
    var on = alertsOn();
    alertsButton.setAttribute("aria-pressed", on ? "true" : "false");
    alertsButton.title = on
      ? "Alerts on: a sound and a desktop notification when a ticket is assigned to me (click to turn off)"
      : "Alerts off: click for a sound and a desktop notification when a ticket is assigned to me";
  }

  if (alertsButton) {
    showAlerts();
    alertsButton.addEventListener("click", function () {
      // Permission is asked here, from the click, never on page load.
      var turnOn = !alertsOn();
      try { localStorage.setItem(ALERTS_KEY, turnOn ? "on" : "off"); } catch (err) { /* ignore */ }
      if (turnOn) {
        if (window.Notification && Notification.permission === "default") Notification.requestPermission();
        beep();
      }
      showAlerts();
    });
  }

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.4);
    } catch (err) { /* no audio: the toast still shows */ }
  }

  function alertMe(title, text, href) {
    if (!alertsOn()) return;
    beep();
    if (window.Notification && Notification.permission === "granted" && document.hidden) {
      var n = new Notification(title, { body: text, tag: href });
      n.onclick = function () { window.focus(); location.assign(href); };
    }
  }

  on("notice", function (event) {
    var href = event.ticket ? "/tickets/" + event.ticket + "/" : null;
    var link = href ? { href: href, text: "Open #" + event.ticket } : null;
    var subject = event.subject ? ": " + event.subject : "";
    if (event.op === "assigned") {
      toast((event.by || "Someone") + " assigned you #" + event.ticket + subject, "info", link);
      alertMe("Assigned to you: #" + event.ticket, event.subject || "", href);
    } else if (event.op === "transferred") {
      var note = event.note ? " — “" + event.note + "”" : "";
      toast((event.by || "Someone") + " transferred #" + event.ticket + " to you" + subject + note, "info", link);
      alertMe("Transferred to you: #" + event.ticket, event.subject || "", href);
    } else if (event.op === "sla_breached" || event.op === "sla_at_risk") {
      var what = event.op === "sla_breached" ? "SLA breached" : "SLA at risk";
      toast(what + " on #" + event.ticket + subject + (event.reason ? " (" + event.reason + ")" : ""), "warning", link);
    } else {
      // Other notices carry their own words.
      var text = event.text || event.message || event.reason || (event.op + (event.ticket ? " #" + event.ticket : ""));
      toast(text + (event.ticket && !event.text ? subject : ""), event.level === "error" ? "error" : "warning", link);
    }
  });

  // ---------------------------------------------------------------- keys

  var keys = document.getElementById("keys");
  var keysOpen = document.getElementById("keys-open");

  function showKeys() {
    if (keys && !keys.open) keys.showModal();
  }
  if (keysOpen) keysOpen.addEventListener("click", showKeys);

  function typingInField(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  // Pages add their own keys through Live.key(letter, fn); these work everywhere.
  var keyHandlers = {};
  function key(letter, fn) { keyHandlers[letter] = fn; }
  key("?", showKeys);
  key("n", function () {
    var form = document.querySelector("form.take-next");
    if (form) form.requestSubmit();
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typingInField(event) || (keys && keys.open)) return;
    var fn = keyHandlers[event.key];
    // A handler returns false when the key is not for it this time.
    if (fn && fn(event) !== false) event.preventDefault();
  });

  window.Live = {
    me: me,
    on: on,
    send: send,
    onOpen: onOpen,
    fresh: fresh,
    seen: seen,
    toast: toast,
    json: json,
    key: key,
    config: config,
  };
  // After every page script has registered its handlers and its onOpen frames.
  document.addEventListener("DOMContentLoaded", connect);
})();
