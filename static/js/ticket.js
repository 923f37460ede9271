// The ticket page: canned responses by shortcut ("/outage" then Tab or Enter) or from the
// picker, Ctrl+Enter to send, the thread opened at its newest message.
// Template text is inserted as text (textarea value); lists are built with textContent.
"use strict";
(function () {
  var thread = document.getElementById("thread");
  if (thread) thread.scrollTop = thread.scrollHeight;

  var form = document.getElementById("composer");
  var text = document.getElementById("reply-text");
  var picker = document.getElementById("canned");
  var list = document.getElementById("canned-list");
  var filter = document.getElementById("canned-filter");
  var opener = document.getElementById("canned-open");
  var dataNode = document.getElementById("canned-data");
  if (!form || !text || !picker || !dataNode) return;

  var canned = JSON.parse(dataNode.textContent);
  // "slash": typing /shortcut in the text; "browse": the Templates button with its filter.
  var mode = null;
  var matches = [];
  var active = 0;
  var token = null; // {start, end} of the "/query" being typed

  function tokenAtCaret() {
    var caret = text.selectionStart;
    if (caret !== text.selectionEnd) return null;
    var before = text.value.slice(0, caret);
    var m = /(^|\s)\/([\p{L}\p{N}_-]*)$/u.exec(before);
    if (!m) return null;
    return { start: caret - m[2].length - 1, end: caret, query: m[2].toLowerCase() };
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
    var current = list.querySelector(".is-active");
    if (current) current.scrollIntoView({ block: "nearest" });
  }

  function open(newMode, items) {
    mode = newMode;
    matches = items;
    active = 0;
    picker.hidden = false;
    filter.hidden = newMode !== "browse";
    opener.setAttribute("aria-expanded", "true");
    render();
  }

  function close() {
    mode = null;
    token = null;
    picker.hidden = true;
    opener.setAttribute("aria-expanded", "false");
  }

  function insert(item) {
    var start, end;
    if (mode === "slash" && token) {
      start = token.start;
      end = token.end;
    } else {
      start = text.selectionStart;
      end = text.selectionEnd;
    }
    text.setRangeText(item.body, start, end, "end");
    close();
    text.focus();
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function bySlash(query) {
    return canned.filter(function (c) { return c.shortcut.toLowerCase().startsWith(query); });
  }

  function byFilter(query) {
    var q = query.trim().toLowerCase();
    return canned.filter(function (c) {
      return !q || (c.shortcut + " " + c.title + " " + c.body).toLowerCase().includes(q);
    });
  }

  function updateSlash() {
    token = tokenAtCaret();
    if (token) open("slash", bySlash(token.query));
    else if (mode === "slash") close();
  }

  text.addEventListener("input", updateSlash);
  text.addEventListener("click", updateSlash);

  function navigate(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!matches.length) return false;
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
    if ((event.key === "Tab" || event.key === "Enter") && !event.ctrlKey && !event.metaKey) {
      if (!matches.length) {
        if (mode === "slash") close();
        return false;
      }
      event.preventDefault();
      insert(matches[active]);
      return true;
    }
    return false;
  }

  text.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      close();
      form.requestSubmit(document.getElementById("send"));
      return;
    }
    if (mode === "slash") navigate(event);
  });

  filter.addEventListener("input", function () {
    matches = byFilter(filter.value);
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
    open("browse", byFilter(""));
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
})();
