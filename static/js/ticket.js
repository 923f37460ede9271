// The ticket page: canned responses by type-ahead ("/" then letters of a shortcut, a title
// or the text; or a shortcut typed as a word, then Tab), Ctrl+Enter to send, the thread
// opened at its newest message; and live: new messages, delivery ticks, who else is viewing
// and typing, changes made by others, with a re-sync after a reconnect.
// Template text is inserted as text (textarea value); lists are built with textContent;
// messages come rendered by the server (_message.html, escaped by Django).
"use strict";
(function () {
  var main = document.getElementById("ticket");
  var thread = document.getElementById("thread");
  if (thread) thread.scrollTop = thread.scrollHeight;

  var form = document.getElementById("composer");
  var text = document.getElementById("reply-text");
  var picker = document.getElementById("canned");
  var list = document.getElementById("canned-list");
  var filter = document.getElementById("canned-filter");
  var opener = document.getElementById("canned-open");
  var dataNode = document.getElementById("canned-data");
  var ticketLanguage = main ? main.dataset.language || "" : "";

  // ================================================================ canned responses
  if (form && text && picker && dataNode) (function () {
    var canned = JSON.parse(dataNode.textContent);
    // "slash": "/query" typed in the text; "word": a word that is exactly a shortcut (Tab
    // takes it, Enter stays a new line); "browse": the Templates button with its filter.
    var mode = null;
    var matches = [];
    var active = 0;
    var token = null; // {start, end, query} of what is being typed

    function tokenAtCaret() {
      var caret = text.selectionStart;
      if (caret !== text.selectionEnd) return null;
      var before = text.value.slice(0, caret);
      var m = /(^|\s)\/([\p{L}\p{N}_-]*)$/u.exec(before);
      if (m) return { start: caret - m[2].length - 1, end: caret, query: m[2].toLowerCase(), slash: true };
      m = /(^|\s)([\p{L}\p{N}_-]{2,})$/u.exec(before);
      if (m) return { start: caret - m[2].length, end: caret, query: m[2].toLowerCase(), slash: false };
      return null;
    }

    // Best first: the shortcut starting with what was typed, then a shortcut or a title word
    // containing it, then the title or the text; within each, the ticket's language before
    // "any language", the agent's teams' templates before global ones, then by shortcut.
    function rank(item, q) {
      var sc = item.shortcut.toLowerCase();
      var title = item.title.toLowerCase();
      var tier;
      if (!q || sc.startsWith(q)) tier = 0;
      else if (sc.includes(q) || title.split(/[\s\p{P}]+/u).some(function (w) { return w.startsWith(q); })) tier = 1;
      else if (title.includes(q) || item.body.toLowerCase().includes(q)) tier = 2;
      else return null;
      return [tier, item.language && item.language === ticketLanguage ? 0 : 1, item.team ? 0 : 1];
    }

    function search(q) {
      var scored = [];
      canned.forEach(function (item) {
        var r = rank(item, q);
        if (r) scored.push({ r: r, item: item });
      });
      scored.sort(function (a, b) {
        for (var i = 0; i < 3; i += 1) if (a.r[i] !== b.r[i]) return a.r[i] - b.r[i];
        return a.item.shortcut.localeCompare(b.item.shortcut);
      });
      return scored.map(function (s) { return s.item; });
    }

    function render() {
      list.replaceChildren();
      if (!matches.length) {
        var none = document.createElement("li");
        none.className = "empty";
        none.textContent = canned.length ? "No template matches" : "No templates for this language";
        list.appendChild(none);
        return;
      }
      matches.forEach(function (item, index) {
        var li = document.createElement("li");
        li.setAttribute("role", "option");
        li.id = "canned-" + index;
        li.dataset.index = String(index);
        if (index === active) {
          li.classList.add("is-active");
          li.setAttribute("aria-selected", "true");
        }
        var sc = document.createElement("span");
        sc.className = "sc";
        sc.textContent = "/" + item.shortcut;
        var title = document.createElement("span");
        title.className = "title";
        title.textContent = item.title + (item.language ? " · " + item.language : "");
        var body = document.createElement("span");
        body.className = "body";
        body.textContent = item.body;
        li.append(sc, title, body);
        list.appendChild(li);
      });
      text.setAttribute("aria-activedescendant", "canned-" + active);
      var current = list.querySelector(".is-active");
      if (current) current.scrollIntoView({ block: "nearest" });
    }

    function open(newMode, items) {
      mode = newMode;
      matches = items;
      active = 0;
      picker.hidden = false;
      picker.dataset.mode = newMode;
      filter.hidden = newMode !== "browse";
      opener.setAttribute("aria-expanded", "true");
      render();
    }

    function close() {
      mode = null;
      token = null;
      picker.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      text.removeAttribute("aria-activedescendant");
    }

    function insert(item) {
      var start, end;
      if ((mode === "slash" || mode === "word") && token) {
        start = token.start;
        end = token.end;
      } else {
        start = text.selectionStart;
        end = text.selectionEnd;
      }
      text.setRangeText(item.body, start, end, "end");
      close();
      text.focus();
      // A variable the server could not fill (no account number on file): select it, so
      // the agent types over it instead of sending "{{contact.account}}".
      var rest = text.value.slice(start, start + item.body.length);
      var left = /\{\{[^}]*\}\}/.exec(rest);
      if (left) text.setSelectionRange(start + left.index, start + left.index + left[0].length);
      text.dispatchEvent(new Event("input", { bubbles: true }));
    }

    function update() {
      token = tokenAtCaret();
      if (token && token.slash) {
        open("slash", search(token.query));
      } else if (token) {
        var exact = canned.filter(function (c) { return c.shortcut.toLowerCase() === token.query; });
        if (exact.length) open("word", search(token.query).filter(function (c) { return exact.indexOf(c) >= 0; }));
        else if (mode === "slash" || mode === "word") close();
      } else if (mode === "slash" || mode === "word") {
        close();
      }
    }

    text.addEventListener("input", update);
    text.addEventListener("click", update);

    function navigate(event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!matches.length || mode === "word") return false;
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        active = (active + step + matches.length) % matches.length;
        render();
        return true;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        close();
        text.focus();
        return true;
      }
      var takes = event.key === "Tab" || (event.key === "Enter" && mode !== "word");
      if (takes && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
        if (!matches.length) {
          if (mode === "slash") close();
          return false;
        }
        event.preventDefault();
        insert(matches[active]);
        return true;
      }
      if (event.key === "Enter" && mode === "word") close();
      return false;
    }

    text.addEventListener("keydown", function (event) {
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
        event.preventDefault();
        close();
        form.requestSubmit(document.getElementById("send"));
        return;
      }
      if (mode === "slash" || mode === "word") navigate(event);
    });

    filter.addEventListener("input", function () {
      matches = search(filter.value.trim().toLowerCase());
      active = 0;
      render();
    });
    filter.addEventListener("keydown", navigate);

    opener.addEventListener("click", function () {
      if (mode === "browse") {
        close();
        return;
      }
      filter.value = "";
      open("browse", search(""));
      filter.focus();
    });

    list.addEventListener("mousedown", function (event) {
      // mousedown, not click: the textarea keeps its caret and selection.
      var li = event.target.closest("li[data-index]");
      if (!li) return;
      event.preventDefault();
      insert(matches[Number(li.dataset.index)]);
    });

    document.addEventListener("click", function (event) {
      if (mode && !picker.contains(event.target) && event.target !== opener && event.target !== text) {
        close();
      }
    });
  })();

  if (form) {
    // One send per press: a double click must not send the answer twice.
    form.addEventListener("submit", function (event) {
      if (form.dataset.sending) {
        event.preventDefault();
        return;
      }
      form.dataset.sending = "1";
    });
    var files = form.querySelector('input[type="file"]');
    var names = document.getElementById("attach-names");
    if (files && names) {
      files.addEventListener("change", function () {
        names.textContent = Array.from(files.files).map(function (f) { return f.name; }).join(", ");
      });
    }
  }

  // ================================================================ live
  var Live = window.Live;
  if (!main || !thread || !Live) return;
  var ticketId = Number(main.dataset.ticket);
  var gone = false;
  Live.seen(ticketId, Number(main.dataset.version));

  // This page wants its own ticket, not the whole queue.
  Live.onOpen({ type: "listen", queue: false });
  Live.onOpen({ type: "watch", ticket: ticketId });

  // ---------------------------------------------------------------- keys: r, e

  Live.key("r", function () {
    if (!text) return false;
    var reply = form.querySelector('input[name="mode"][value="reply"]');
    if (reply) reply.checked = true;
    text.focus();
  });
  Live.key("e", function () {
    var resolve = document.querySelector('#status-buttons button[value="resolved"]');
    if (!resolve || resolve.classList.contains("is-current")) return false;
    resolve.click();
  });

  // ---------------------------------------------------------------- messages

  function lastMessageId() {
    var last = 0;
    thread.querySelectorAll("[id^=m]").forEach(function (node) {
      var id = Number(node.id.slice(1));
      if (id > last) last = id;
    });
    return last;
  }

  function nearBottom() {
    return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
  }

  var newPill = null;
  function showNewPill() {
    if (newPill) return;
    newPill = document.createElement("button");
    newPill.type = "button";
    newPill.className = "new-pill";
    newPill.textContent = "New messages ↓";
    newPill.addEventListener("click", function () {
      thread.scrollTop = thread.scrollHeight;
      newPill.remove();
      newPill = null;
    });
    thread.parentNode.insertBefore(newPill, thread.nextSibling);
  }

  function nodeFrom(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim(); // server-rendered by Django, every value escaped
    return template.content.firstElementChild;
  }

  function putMessages(data, append) {
    var stick = nearBottom();
    var added = false;
    data.messages.forEach(function (item) {
      var node = nodeFrom(item.html);
      if (!node) return;
      var old = document.getElementById("m" + item.id);
      if (old) {
        old.replaceWith(node);
      } else if (append) {
        var empty = thread.querySelector(".thread-note:only-child");
        if (empty) empty.remove();
        node.classList.add("is-new");
        thread.appendChild(node);
        added = true;
      }
    });
    if (added) {
      if (stick) thread.scrollTop = thread.scrollHeight;
      else showNewPill();
    }
    if (data.more) location.reload(); // more missed than one answer holds
  }

  // One request at a time; whatever arrives meanwhile is fetched right after.
  var newWanted = false;
  var updateWanted = new Set();
  var busy = false;

  function pump() {
    if (busy || gone) return;
    var url = main.dataset.messagesUrl;
    var append;
    if (newWanted) {
      newWanted = false;
      append = true;
      url += "?after=" + lastMessageId();
    } else if (updateWanted.size) {
      var ids = Array.from(updateWanted).slice(0, 50);
      ids.forEach(function (id) { updateWanted.delete(id); });
      append = false;
      url += "?ids=" + ids.join(",");
    } else {
      return;
    }
    busy = true;
    Live.json(url)
      .then(function (data) { putMessages(data, append); })
      .catch(function (err) {
        if (err.status === 404) showGone();
        else console.warn("messages:", err.message);
      })
      .then(function () { busy = false; pump(); });
  }

  var messageVersions = new Map();
  Live.on("message", function (event) {
    if (event.ticket !== ticketId) return;
    var id = event.message.id;
    if (event.op === "create") {
      if (!document.getElementById("m" + id)) newWanted = true;
    } else {
      // Receipts arrive out of order and twice: only a newer state of this message.
      var known = messageVersions.get(id);
      if (known != null && event.version <= known) return;
      messageVersions.set(id, event.version);
      if (document.getElementById("m" + id)) updateWanted.add(id);
      else newWanted = true;
    }
    pump();
  });

  // ---------------------------------------------------------------- the ticket itself

  function showGone() {
    gone = true;
    var banner = document.getElementById("ticket-gone");
    if (banner) banner.hidden = false;
    if (form) form.querySelectorAll("textarea, button").forEach(function (n) { n.disabled = true; });
  }

  // Status, priority, SLA, assignee: re-read from the page itself, so they look exactly as
  // after a reload. A part the agent is working in (focus inside) is left alone.
  var headBusy = false;
  var headAgain = false;
  function refreshHead() {
    if (headBusy) { headAgain = true; return; }
    headBusy = true;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 404) { showGone(); return null; }
        if (!response.ok) throw new Error(response.statusText);
        return response.text();
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["ticket-meta", "status-buttons", "ticket-assignee", "ticket-opened"].forEach(function (id) {
          var mine = document.getElementById(id);
          var theirs = doc.getElementById(id);
          if (!mine || !theirs || mine.contains(document.activeElement)) return;
          mine.replaceWith(document.importNode(theirs, true));
        });
        var freshMain = doc.getElementById("ticket");
        if (freshMain) {
          main.dataset.version = freshMain.dataset.version;
          Live.seen(ticketId, Number(freshMain.dataset.version));
        }
      })
      .catch(function (err) { console.warn("ticket refresh:", err.message); })
      .then(function () {
        headBusy = false;
        if (headAgain) { headAgain = false; refreshHead(); }
      });
  }

  Live.on("ticket", function (event) {
    if (event.ticket.id !== ticketId) return;
    if (event.op === "remove") { showGone(); return; }
    if (!Live.fresh(ticketId, event.version)) return;
    refreshHead();
  });

  Live.on("open", function (info) {
    if (!info.reconnected) return;
    // Back after a gap: whatever was missed, from the server.
    newWanted = true;
    pump();
    refreshHead();
  });

  // ---------------------------------------------------------------- viewing and typing

  var viewersNode = document.getElementById("viewers");
  var typingNode = document.getElementById("typing");
  var viewers = new Map(); // agent id -> {name, until, version}
  var typers = new Map();

  function initials(name) {
    return name.split(/\s+/).filter(Boolean).slice(0, 2).map(function (w) { return w[0].toUpperCase(); }).join("");
  }

  function drawViewers() {
    if (!viewersNode) return;
    viewersNode.replaceChildren();
    if (!viewers.size) { viewersNode.hidden = true; return; }
    var label = document.createElement("span");
    label.className = "viewers-label";
    label.textContent = "Also here:";
    viewersNode.appendChild(label);
    viewers.forEach(function (v, id) {
      var chip = document.createElement("span");
      chip.className = "viewer" + (typers.has(id) ? " is-typing" : "");
      chip.title = v.name + (typers.has(id) ? " is typing a reply" : " has this ticket open");
      var avatar = document.createElement("span");
      avatar.className = "avatar avatar-sm";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = initials(v.name);
      var name = document.createElement("span");
      name.textContent = v.name;
      chip.append(avatar, name);
      viewersNode.appendChild(chip);
    });
    viewersNode.hidden = false;
  }

  function drawTyping() {
    if (!typingNode) return;
    var names = Array.from(typers.values()).map(function (t) { return t.name; });
    if (!names.length) typingNode.textContent = "";
    else if (names.length === 1) typingNode.textContent = names[0] + " is typing a reply…";
    else typingNode.textContent = names.slice(0, -1).join(", ") + " and " + names[names.length - 1] + " are typing…";
  }

  function track(map, event) {
    var id = event.agent.id;
    var known = map.get(id);
    if (known && event.version < known.version) return false; // a late one
    if (event.op === "stop") map.delete(id);
    else map.set(id, { name: event.agent.name, until: Date.now() + event.ttl * 1000, version: event.version });
    return true;
  }

  Live.on("viewing", function (event) {
    if (event.ticket !== ticketId || event.agent.id === Live.me) return;
    if (track(viewers, event)) {
      if (event.op === "stop") typers.delete(event.agent.id);
      drawViewers();
      drawTyping();
    }
  });
  Live.on("typing", function (event) {
    if (event.ticket !== ticketId || event.agent.id === Live.me) return;
    if (track(typers, event)) {
      // Typing here means viewing here, even before their "viewing" arrives.
      if (event.op !== "stop" && !viewers.has(event.agent.id)) {
        viewers.set(event.agent.id, { name: event.agent.name, until: Date.now() + Live.config.viewing_ttl * 1000, version: 0 });
      }
      drawViewers();
      drawTyping();
    }
  });
  // Nothing heard for ttl seconds: gone (a closed laptop sends no "stop").
  setInterval(function () {
    var now = Date.now();
    var changed = false;
    [viewers, typers].forEach(function (map) {
      map.forEach(function (v, id) { if (v.until < now) { map.delete(id); changed = true; } });
    });
    if (changed) { drawViewers(); drawTyping(); }
  }, 1000);
  Live.on("open", function () { viewers.clear(); typers.clear(); drawViewers(); drawTyping(); });

  if (text) {
    var lastTypingSent = 0;
    var stopTimer = null;
    function stopTyping() {
      clearTimeout(stopTimer);
      if (lastTypingSent) Live.send({ type: "typing", ticket: ticketId, typing: false });
      lastTypingSent = 0;
    }
    text.addEventListener("input", function () {
      if (!text.value.trim()) { stopTyping(); return; }
      var now = Date.now();
      // Repeated every 2 s while typing; the others forget it after typing_ttl without one.
      if (now - lastTypingSent > 2000) {
        lastTypingSent = now;
        Live.send({ type: "typing", ticket: ticketId, typing: true });
      }
      clearTimeout(stopTimer);
      stopTimer = setTimeout(stopTyping, 4000);
    });
    text.addEventListener("blur", stopTyping);
    if (form) form.addEventListener("submit", stopTyping);
  }
})();
