/*
 * The helpdesk's web chat widget. One tag on any page:
 *
 *   <script src="https://helpdesk.example/static/channels_in/widget.js"
 *           data-channel="<channel key>" async></script>
 *
 * Optional: data-lang="lt" (en, pt, ru, zh, lt; default: the page's lang), data-color="#0b5cad"
 * (the launcher's colour before the first connection; the channel's settings win after it).
 * The host page's Content-Security-Policy must allow this script and connect-src to the
 * helpdesk's wss:// origin.
 *
 * It talks to wss://<the script's own host>/ws/widget/<channel key>/ (protocol described in
 * channels_in/widget/consumers.py). No dependencies, no build step, no external fonts; the UI
 * lives in a shadow root so the host page's CSS cannot break it, and message text is only ever
 * put into the page with textContent / text nodes, never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.getAttribute("data-channel")) {
    if (window.console) console.error("helpdesk widget: the script tag needs data-channel");
    return;
  }
  var CHANNEL = script.getAttribute("data-channel");
  window.__helpdeskWidgets = window.__helpdeskWidgets || {};
  if (window.__helpdeskWidgets[CHANNEL]) return; // the same tag twice on one page
  window.__helpdeskWidgets[CHANNEL] = true;

  var SRC = new URL(script.src, location.href);
  // The helpdesk may live under a path prefix: everything before /static/ is it.
  var PREFIX = SRC.pathname.split("/static/")[0];
  var SOCKET_URL =
    (SRC.protocol === "https:" ? "wss://" : "ws://") +
    SRC.host + PREFIX + "/ws/widget/" + encodeURIComponent(CHANNEL) + "/";
  var STORE = "helpdesk-widget:" + CHANNEL + ":";
  var CLOSE_ORIGIN = 4403, CLOSE_UNKNOWN = 4404, CLOSE_RATE = 4429;
  var PING_EVERY = 25000;

  // ------------------------------------------------------------------ strings

  var STRINGS = {
    en: {
      launcher: "Chat with us", close: "Close chat", title: "Customer service",
      placeholder: "Write a message…", input: "Your message", send: "Send",
      sending: "Sending…", sent: "Sent", waiting: "Waiting for connection…",
      notSent: "Not sent", retrying: "Not sent yet, retrying…",
      connecting: "Connecting…", online: "Online",
      reconnecting: "Connection lost. Reconnecting…",
      unavailable: "The chat is not available right now. Please try again later.",
      rate: "You are sending messages too quickly. Please wait a moment.",
      tooLong: "The message is too long.",
      agent: "Agent", bot: "Assistant", you: "You",
      prechatIntro: "Before we start, please tell us how to reach you.",
      name: "Name", email: "Email", phone: "Phone",
      required: "required", optional: "optional", start: "Start chat", skip: "Skip",
      invalid_email: "Please enter a valid email address.",
      invalid_phone: "Please enter a valid phone number.",
      invalid_name: "Please enter your name.", prechat_required: "Please fill in this field.",
      greeting: "Hello! How can we help you?", unread: "new messages",
      hint: "Enter to send, Shift+Enter for a new line", poweredBy: "Secure chat",
      buttons: "Choose an option"
    },
    pt: {
      launcher: "Fale connosco", close: "Fechar conversa", title: "Apoio ao cliente",
      placeholder: "Escreva uma mensagem…", input: "A sua mensagem", send: "Enviar",
      sending: "A enviar…", sent: "Enviada", waiting: "À espera de ligação…",
      notSent: "Não enviada", retrying: "Ainda não enviada, a tentar de novo…",
      connecting: "A ligar…", online: "Online",
      reconnecting: "Ligação perdida. A voltar a ligar…",
      unavailable: "O chat não está disponível neste momento. Tente mais tarde.",
      rate: "Está a enviar mensagens demasiado depressa. Aguarde um momento.",
      tooLong: "A mensagem é demasiado longa.",
      agent: "Assistente", bot: "Assistente virtual", you: "Você",
      prechatIntro: "Antes de começarmos, diga-nos como o podemos contactar.",
      name: "Nome", email: "Email", phone: "Telefone",
      required: "obrigatório", optional: "opcional", start: "Iniciar conversa", skip: "Saltar",
      invalid_email: "Introduza um endereço de email válido.",
      invalid_phone: "Introduza um número de telefone válido.",
      invalid_name: "Introduza o seu nome.", prechat_required: "Preencha este campo.",
      greeting: "Olá! Como podemos ajudar?", unread: "novas mensagens",
      hint: "Enter para enviar, Shift+Enter para nova linha", poweredBy: "Chat seguro",
      buttons: "Escolha uma opção"
    },
    ru: {
      launcher: "Напишите нам", close: "Закрыть чат", title: "Служба поддержки",
      placeholder: "Напишите сообщение…", input: "Ваше сообщение", send: "Отправить",
      sending: "Отправляется…", sent: "Отправлено", waiting: "Ждём соединения…",
      notSent: "Не отправлено", retrying: "Пока не отправлено, пробуем ещё раз…",
      connecting: "Подключение…", online: "В сети",
      reconnecting: "Связь потеряна. Переподключаемся…",
      unavailable: "Чат сейчас недоступен. Попробуйте позже.",
      rate: "Вы отправляете сообщения слишком часто. Подождите немного.",
      tooLong: "Сообщение слишком длинное.",
      agent: "Оператор", bot: "Ассистент", you: "Вы",
      prechatIntro: "Прежде чем начать, расскажите, как с вами связаться.",
      name: "Имя", email: "Эл. почта", phone: "Телефон",
      required: "обязательно", optional: "необязательно", start: "Начать чат",
      skip: "Пропустить",
      invalid_email: "Введите правильный адрес электронной почты.",
      invalid_phone: "Введите правильный номер телефона.",
      invalid_name: "Введите имя.", prechat_required: "Заполните это поле.",
      greeting: "Здравствуйте! Чем можем помочь?", unread: "новых сообщений",
      hint: "Enter — отправить, Shift+Enter — новая строка", poweredBy: "Защищённый чат",
      buttons: "Выберите вариант"
    },
    zh: {
      launcher: "联系我们", close: "关闭聊天", title: "客户服务",
      placeholder: "输入消息…", input: "您的消息", send: "发送",
      sending: "发送中…", sent: "已发送", waiting: "等待连接…",
      notSent: "未发送", retrying: "尚未发送，正在重试…",
      connecting: "正在连接…", online: "在线",
      reconnecting: "连接已断开，正在重新连接…",
      unavailable: "聊天暂时不可用，请稍后再试。",
      rate: "您发送消息过于频繁，请稍候。",
      tooLong: "消息过长。",
      agent: "客服", bot: "智能助手", you: "您",
      prechatIntro: "开始之前，请告诉我们如何联系您。",
      name: "姓名", email: "电子邮件", phone: "电话",
      required: "必填", optional: "选填", start: "开始聊天", skip: "跳过",
      invalid_email: "请输入有效的电子邮件地址。",
      invalid_phone: "请输入有效的电话号码。",
      invalid_name: "请输入您的姓名。", prechat_required: "请填写此项。",
      greeting: "您好！有什么可以帮您？", unread: "条新消息",
      hint: "按 Enter 发送，Shift+Enter 换行", poweredBy: "安全聊天",
      buttons: "请选择"
    },
    lt: {
      launcher: "Parašykite mums", close: "Uždaryti pokalbį", title: "Klientų aptarnavimas",
      placeholder: "Rašykite žinutę…", input: "Jūsų žinutė", send: "Siųsti",
      sending: "Siunčiama…", sent: "Išsiųsta", waiting: "Laukiama ryšio…",
      notSent: "Neišsiųsta", retrying: "Dar neišsiųsta, bandoma dar kartą…",
      connecting: "Jungiamasi…", online: "Prisijungta",
      reconnecting: "Ryšys nutrūko. Jungiamasi iš naujo…",
      unavailable: "Pokalbis šiuo metu nepasiekiamas. Pabandykite vėliau.",
      rate: "Siunčiate žinutes per greitai. Palaukite akimirką.",
      tooLong: "Žinutė per ilga.",
      agent: "Konsultantas", bot: "Asistentas", you: "Jūs",
      prechatIntro: "Prieš pradėdami, nurodykite, kaip su jumis susisiekti.",
      name: "Vardas", email: "El. paštas", phone: "Telefonas",
      required: "privaloma", optional: "neprivaloma", start: "Pradėti pokalbį",
      skip: "Praleisti",
      invalid_email: "Įveskite teisingą el. pašto adresą.",
      invalid_phone: "Įveskite teisingą telefono numerį.",
      invalid_name: "Įveskite vardą.", prechat_required: "Užpildykite šį lauką.",
      greeting: "Sveiki! Kuo galime padėti?", unread: "naujos žinutės",
      hint: "Enter – siųsti, Shift+Enter – nauja eilutė", poweredBy: "Saugus pokalbis",
      buttons: "Pasirinkite"
    }
  };

  function pickLang() {
    var wanted = [
      script.getAttribute("data-lang"),
      document.documentElement.getAttribute("lang"),
      navigator.language
    ];
    for (var i = 0; i < wanted.length; i++) {
      var code = (wanted[i] || "").slice(0, 2).toLowerCase();
      if (STRINGS[code]) return code;
    }
    return "en";
  }
  var LANG = pickLang();
  var T = STRINGS[LANG];

  // ------------------------------------------------------------------ storage

  // Storage may be blocked (privacy modes, sandboxed frames): the chat still works for the
  // page's lifetime, it only forgets the visitor on reload.
  function load(name, fallback) {
    try {
      var raw = window.localStorage.getItem(STORE + name);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return fallback;
    }
  }
  function save(name, value) {
    try {
      if (value === null || value === undefined) window.localStorage.removeItem(STORE + name);
      else window.localStorage.setItem(STORE + name, JSON.stringify(value));
    } catch (e) { /* see load() */ }
  }
  function sessionFlag(name, value) {
    try {
      if (value === undefined) return window.sessionStorage.getItem(STORE + name) === "1";
      if (value) window.sessionStorage.setItem(STORE + name, "1");
      else window.sessionStorage.removeItem(STORE + name);
    } catch (e) { /* ignore */ }
    return false;
  }

  function newClientId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // ------------------------------------------------------------------ styles

  var CSS = [
    ":host{all:initial}",
    "*,*::before,*::after{box-sizing:border-box}",
    "[hidden]{display:none!important}",
    ".root{--accent:#0b5cad;--accent-ink:#fff;--ink:#1c2430;--muted:#5b6676;--line:#dde3ea;",
    "--bg:#fff;--soft:#f3f6f9;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,",
    "'Noto Sans','Helvetica Neue',Arial,sans-serif;color:var(--ink);}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;display:flex;",
    "align-items:center;gap:10px;height:56px;min-width:56px;padding:0 20px 0 16px;border:0;",
    "border-radius:28px;background:var(--accent);color:var(--accent-ink);font:inherit;",
    "font-weight:600;cursor:pointer;box-shadow:0 6px 20px rgba(16,24,40,.28);}",
    ".launcher:hover{filter:brightness(1.08)}",
    ".launcher svg{width:26px;height:26px;flex:none}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;padding:0 6px;",
    "border-radius:11px;background:#d92d20;color:#fff;font-size:12px;font-weight:700;",
    "line-height:22px;text-align:center;border:2px solid #fff}",
    "button:focus-visible,textarea:focus-visible,input:focus-visible,.log:focus-visible",
    "{outline:3px solid #f5a524;outline-offset:2px}",
    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483000;width:380px;",
    "height:min(600px,calc(100vh - 110px));display:flex;flex-direction:column;",
    "background:var(--bg);border-radius:16px;overflow:hidden;",
    "box-shadow:0 12px 40px rgba(16,24,40,.25);border:1px solid var(--line);",
    "animation:rise .18s ease-out}",
    "@keyframes rise{from{opacity:0;transform:translateY(12px)}to{opacity:1;transform:none}}",
    "@media (prefers-reduced-motion:reduce){.panel{animation:none}}",
    ".still .panel{animation:none}",
    ".header{display:flex;align-items:center;gap:12px;padding:14px 14px 14px 18px;",
    "background:var(--accent);color:var(--accent-ink)}",
    ".avatar{width:38px;height:38px;border-radius:50%;background:rgba(255,255,255,.18);",
    "display:flex;align-items:center;justify-content:center;flex:none}",
    ".avatar svg{width:22px;height:22px}",
    ".heading{flex:1;min-width:0}",
    ".title{margin:0;font-size:16px;font-weight:700;line-height:1.25;overflow:hidden;",
    "text-overflow:ellipsis;white-space:nowrap}",
    ".status{margin:2px 0 0;font-size:12.5px;opacity:.9;display:flex;align-items:center;gap:6px}",
    ".dot{width:8px;height:8px;border-radius:50%;background:#9aa4b2;flex:none}",
    ".status[data-state=online] .dot{background:#3ddc84}",
    ".status[data-state=reconnecting] .dot{background:#f5a524}",
    ".status[data-state=unavailable] .dot{background:#ff6b5e}",
    ".icon-button{width:40px;height:40px;border:0;border-radius:10px;background:transparent;",
    "color:inherit;cursor:pointer;display:flex;align-items:center;justify-content:center}",
    ".icon-button:hover{background:rgba(255,255,255,.16)}",
    ".icon-button svg{width:22px;height:22px}",
    ".log{flex:1;overflow-y:auto;padding:16px 14px 8px;background:var(--soft);",
    "display:flex;flex-direction:column;gap:10px;overscroll-behavior:contain}",
    ".msg{display:flex;flex-direction:column;max-width:85%;align-items:flex-start}",
    ".msg.mine{align-self:flex-end;align-items:flex-end}",
    ".who{font-size:12px;color:var(--muted);margin:0 0 3px 4px;font-weight:600}",
    ".bubble{padding:9px 13px;border-radius:16px 16px 16px 4px;background:#fff;",
    "border:1px solid var(--line);white-space:pre-wrap;overflow-wrap:anywhere;",
    "word-break:break-word}",
    ".mine .bubble{background:var(--accent);color:var(--accent-ink);border-color:transparent;",
    "border-radius:16px 16px 4px 16px}",
    ".mine .bubble a{color:inherit}",
    ".bubble a{color:var(--accent);text-decoration:underline}",
    ".meta{font-size:11.5px;color:var(--muted);margin:3px 6px 0}",
    ".msg.failed .meta{color:#b42318;font-weight:600}",
    ".msg.pending .bubble{opacity:.75}",
    ".choices{display:flex;flex-wrap:wrap;gap:6px;margin-top:7px}",
    ".choice{font:inherit;font-size:14px;padding:7px 13px;border-radius:18px;cursor:pointer;",
    "border:1.5px solid var(--accent);background:#fff;color:var(--accent);font-weight:600}",
    ".choice:hover:not(:disabled){background:var(--accent);color:var(--accent-ink)}",
    ".choice:disabled{opacity:.5;cursor:default}",
    ".files{display:flex;flex-direction:column;gap:4px;margin-top:6px;font-size:13.5px}",
    ".file,.secure{display:inline-flex;align-items:center;gap:4px}",
    ".file svg,.secure svg{width:13px;height:13px;display:block}",
    ".notice{align-self:center;font-size:12.5px;color:var(--muted);text-align:center;",
    "padding:4px 10px;max-width:90%}",
    ".banner{padding:8px 14px;font-size:13px;background:#fff4e5;color:#7a4a00;",
    "border-top:1px solid #f6d7a7}",
    ".banner.bad{background:#fdecea;color:#8a1c12;border-color:#f5c2bd}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 10px 10px 14px;",
    "border-top:1px solid var(--line);background:#fff}",
    ".composer textarea{flex:1;resize:none;border:1px solid var(--line);border-radius:12px;",
    "padding:9px 12px;font:inherit;color:var(--ink);background:#fff;max-height:120px;",
    "min-height:42px;line-height:1.4}",
    ".composer textarea:focus,.composer textarea:focus-visible{outline:none;",
    "border-color:var(--accent);box-shadow:0 0 0 3px rgba(11,92,173,.18)}",
    ".send{width:42px;height:42px;border:0;border-radius:12px;background:var(--accent);",
    "color:var(--accent-ink);cursor:pointer;display:flex;align-items:center;",
    "justify-content:center;flex:none}",
    ".send:disabled{opacity:.45;cursor:default}",
    ".send svg{width:20px;height:20px}",
    ".foot{padding:0 14px 8px;background:#fff;font-size:11px;color:var(--muted);",
    "display:flex;justify-content:space-between;gap:8px}",
    ".prechat{padding:16px 16px 12px;border-top:1px solid var(--line);background:#fff;",
    "display:flex;flex-direction:column;gap:10px}",
    ".prechat p{margin:0;font-size:14px}",
    ".field{display:flex;flex-direction:column;gap:4px}",
    ".field label{font-size:13px;font-weight:600}",
    ".field label span{font-weight:400;color:var(--muted)}",
    ".field input{font:inherit;padding:9px 11px;border:1px solid var(--line);",
    "border-radius:10px;color:var(--ink);background:#fff}",
    ".field input[aria-invalid=true]{border-color:#b42318}",
    ".field .err{font-size:12.5px;color:#b42318}",
    ".actions{display:flex;gap:8px;justify-content:flex-end}",
    ".primary{font:inherit;font-weight:600;padding:9px 16px;border-radius:10px;border:0;",
    "background:var(--accent);color:var(--accent-ink);cursor:pointer}",
    ".secondary{font:inherit;padding:9px 14px;border-radius:10px;border:1px solid var(--line);",
    "background:#fff;color:var(--ink);cursor:pointer}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);",
    "white-space:nowrap}",
    "@media (max-width:480px){.panel{inset:0;width:auto;height:auto;height:100dvh;",
    "border-radius:0;border:0}.launcher{right:14px;bottom:14px}",
    ".root.open .launcher{display:none}}",
    "@media (max-width:480px){.launcher .label{display:none}.launcher{padding:0;",
    "justify-content:center;width:56px}}"
  ].join("");

  var ICON_CHAT =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21 12a8 8 ' +
    '0 0 1-11.6 7.1L4 20.5l1.4-4.9A8 8 0 1 1 21 12z"/><path d="M8.5 11h.01M12 11h.01M15.5 ' +
    '11h.01" stroke-width="3"/></svg>';
  var ICON_CLOSE =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  var ICON_SEND =
    '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M3.4 20.4 ' +
    '21 12 3.4 3.6l.01 6.53L16 12 3.41 13.87z"/></svg>';
  var ICON_LOCK =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'aria-hidden="true"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 ' +
    '4 0 0 1 8 0v3"/></svg>';
  var ICON_FILE =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'aria-hidden="true"><path d="M21 11.5 12.5 20a5 5 0 0 1-7-7L14 4.5a3.5 3.5 0 0 1 5 5L10.5 ' +
    '18a2 2 0 0 1-3-3L15 7.5"/></svg>';
  var ICON_BOLT =
    '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M13 2 4 14h7' +
    'l-1 8 9-12h-7z"/></svg>';

  // ------------------------------------------------------------------ DOM helpers

  // Builds elements from trusted constants only. Anything that came over the wire goes in
  // through `text` (textContent) or setAttribute after validation.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, key)) continue;
        var value = attrs[key];
        if (value === null || value === undefined || value === false) continue;
        if (key === "text") node.textContent = value;
        else if (key === "icon") node.innerHTML = value; // our SVG constants, never data
        else if (key === "className") node.className = value;
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : value);
      }
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

  // Text with its links made clickable, built from text nodes and <a> elements.
  function richText(parent, text) {
    var last = 0;
    text.replace(URL_RE, function (match, offset) {
      if (offset > last) parent.appendChild(document.createTextNode(text.slice(last, offset)));
      parent.appendChild(el("a", {
        href: match, target: "_blank", rel: "noopener noreferrer nofollow", text: match
      }));
      last = offset + match.length;
      return match;
    });
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  var timeFormat;
  try {
    timeFormat = new Intl.DateTimeFormat(LANG, { hour: "2-digit", minute: "2-digit" });
  } catch (e) {
    timeFormat = null;
  }
  function clock(iso) {
    var when = iso ? new Date(iso) : new Date();
    if (isNaN(when.getTime())) when = new Date();
    return timeFormat ? timeFormat.format(when) : when.toTimeString().slice(0, 5);
  }

  // ------------------------------------------------------------------ the UI

  var host = el("div", { id: "helpdesk-widget-" + CHANNEL, "data-helpdesk-widget": CHANNEL });
  var shadow = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  // A constructed stylesheet where possible: a host page whose Content-Security-Policy
  // forbids inline <style> still gets a styled widget.
  var sheet = null;
  try {
    if (shadow !== host && "adoptedStyleSheets" in shadow) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      shadow.adoptedStyleSheets = [sheet];
    }
  } catch (e) {
    sheet = null;
  }
  if (!sheet) shadow.appendChild(el("style", { text: CSS }));

  var badge = el("span", { className: "badge", hidden: true, "aria-hidden": "true" });
  var launcherLabel = el("span", { className: "label", text: T.launcher });
  var launcher = el("button", {
    type: "button", className: "launcher", "aria-expanded": "false",
    "aria-controls": "hd-panel", "aria-label": T.launcher, icon: ICON_CHAT
  });
  launcher.appendChild(launcherLabel);
  launcher.appendChild(badge);

  var titleNode = el("h2", { className: "title", id: "hd-title", text: T.title });
  var statusText = el("span", { text: T.connecting });
  var statusNode = el("p", { className: "status", "data-state": "connecting" }, [
    el("span", { className: "dot", "aria-hidden": "true" }), statusText
  ]);
  var closeButton = el("button", {
    type: "button", className: "icon-button", "aria-label": T.close, title: T.close,
    icon: ICON_CLOSE
  });
  var log = el("div", {
    className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-labelledby": "hd-title", tabindex: "0"
  });
  var banner = el("div", { className: "banner", role: "status", hidden: true });

  var input = el("textarea", {
    id: "hd-input", rows: "1", placeholder: T.placeholder, maxlength: "4000",
    "aria-describedby": "hd-hint", autocomplete: "off"
  });
  var sendButton = el("button", {
    type: "submit", className: "send", "aria-label": T.send, title: T.send, icon: ICON_SEND
  });
  var composer = el("form", { className: "composer", novalidate: true }, [
    el("label", { className: "sr", for: "hd-input", text: T.input }), input, sendButton
  ]);
  var foot = el("div", { className: "foot" }, [
    el("span", { id: "hd-hint", text: T.hint }),
    el("span", { className: "secure" }, [el("span", { icon: ICON_LOCK }), T.poweredBy])
  ]);
  var prechatForm = el("form", { className: "prechat", novalidate: true, hidden: true });

  var panel = el("section", {
    className: "panel", id: "hd-panel", role: "dialog", "aria-labelledby": "hd-title",
    hidden: true
  }, [
    el("div", { className: "header" }, [
      el("div", { className: "avatar", icon: ICON_BOLT }),
      el("div", { className: "heading" }, [titleNode, statusNode]),
      closeButton
    ]),
    log, banner, prechatForm, composer, foot
  ]);
  var root = el("div", { className: "root", lang: LANG }, [launcher, panel]);
  shadow.appendChild(root);

  // ------------------------------------------------------------------ state

  var state = {
    socket: null,
    greeted: false,
    stopped: false, // 4403/4404: this page can never chat; do not hammer the server
    attempts: 0,
    retryTimer: null,
    pingTimer: null,
    token: load("token", null),
    pending: load("pending", []), // [{client_id, text} | {client_id, button, label}]
    seen: {}, // message ids already rendered
    rendered: {}, // client_id -> the visitor's own message element
    config: {},
    prechat: { fields: {}, done: true },
    unread: 0,
    open: false,
    holdUntil: 0 // rate limited: no sends before this time
  };
  if (!Array.isArray(state.pending)) state.pending = [];

  function setStatus(name) {
    statusNode.setAttribute("data-state", name);
    // The header says it short; the banner above the text box says what is going on.
    statusText.textContent = {
      connecting: T.connecting, online: state.config.subtitle || T.online,
      reconnecting: T.connecting,
      unavailable: T.unavailable
    }[name] || "";
    if (name === "reconnecting" || name === "unavailable") {
      banner.textContent = name === "unavailable" ? T.unavailable : T.reconnecting;
      banner.className = "banner" + (name === "unavailable" ? " bad" : "");
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    sendButton.disabled = name === "unavailable";
  }

  function setAccent(color) {
    if (color && /^#[0-9a-fA-F]{6}$/.test(color)) root.style.setProperty("--accent", color);
  }
  // The tag may carry the channel's colour so the launcher has it before any connection.
  setAccent(script.getAttribute("data-color"));

  function applyConfig(config) {
    state.config = config || {};
    titleNode.textContent = state.config.title || T.title;
    setAccent(state.config.color);
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function setUnread(count) {
    state.unread = count;
    badge.hidden = count === 0;
    badge.textContent = count > 9 ? "9+" : String(count);
    launcher.setAttribute("aria-label", count ? T.launcher + " (" + count + " " + T.unread + ")" : T.launcher);
  }

  // ------------------------------------------------------------------ rendering

  function renderTheirs(frame) {
    if (frame.id !== null && frame.id !== undefined) {
      if (state.seen[frame.id]) return null;
      state.seen[frame.id] = true;
    }
    var isBot = frame.author === "bot";
    var who = frame.name || (isBot ? state.config.bot_name || T.bot : T.agent);
    var bubble = el("div", { className: "bubble" });
    richText(bubble, String(frame.text || ""));
    var node = el("div", { className: "msg theirs " + (isBot ? "bot" : "agent") }, [
      el("div", { className: "who", text: who }), bubble
    ]);
    var files = Array.isArray(frame.attachments) ? frame.attachments : [];
    if (files.length) {
      var list = el("div", { className: "files" });
      files.forEach(function (file) {
        var href = String(file.url || "");
        if (!/^https?:\/\//.test(href)) return;
        list.appendChild(el("a", {
          href: href, target: "_blank", rel: "noopener noreferrer nofollow", className: "file"
        }, [el("span", { icon: ICON_FILE }), String(file.name || href)]));
      });
      bubble.appendChild(list);
    }
    var buttons = Array.isArray(frame.buttons) ? frame.buttons : [];
    if (buttons.length) {
      var group = el("div", { className: "choices", role: "group", "aria-label": T.buttons });
      buttons.forEach(function (button) {
        var id = String(button.id || "");
        var label = String(button.label || id);
        if (!id) return;
        group.appendChild(el("button", {
          type: "button", className: "choice", text: label,
          onclick: function () { pressButton(id, label, group); }
        }));
      });
      node.appendChild(group);
    }
    node.appendChild(el("div", { className: "meta", text: clock(frame.at) }));
    log.appendChild(node);
    return node;
  }

  function renderMine(item, at) {
    if (state.rendered[item.client_id]) return state.rendered[item.client_id];
    var bubble = el("div", { className: "bubble" });
    richText(bubble, String(item.text || item.label || ""));
    var meta = el("div", { className: "meta" });
    var node = el("div", { className: "msg mine" }, [
      el("span", { className: "sr", text: T.you + ": " }), bubble, meta
    ]);
    node._meta = meta;
    node._at = at;
    state.rendered[item.client_id] = node;
    log.appendChild(node);
    // The visitor has answered: the buttons offered before are spent.
    Array.prototype.forEach.call(log.querySelectorAll(".choice"), function (b) { b.disabled = true; });
    return node;
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function markMine(clientId, how) {
    var node = state.rendered[clientId];
    if (!node) return;
    var stick = nearBottom();
    node.classList.toggle("pending", how === "sending" || how === "waiting" || how === "retrying");
    node.classList.toggle("failed", how === "failed");
    var words = { sending: T.sending, waiting: T.waiting, retrying: T.retrying, failed: T.notSent };
    node._meta.textContent = how === "sent" ? clock(node._at) + " · " + T.sent : words[how] || "";
    if (stick) scrollDown();
  }

  function notice(text) {
    log.appendChild(el("div", { className: "notice", role: "status", text: text }));
    scrollDown();
  }

  function renderGreeting() {
    var text = state.config.greeting || T.greeting;
    var node = renderTheirs({ author: "bot", name: state.config.bot_name || "", text: text, at: null });
    if (node) node.classList.add("greeting");
  }

  // ------------------------------------------------------------------ pre-chat form

  function showPrechat(errors) {
    var fields = state.prechat.fields || {};
    var names = ["name", "email", "phone"].filter(function (n) { return fields[n]; });
    if (!names.length) return false;
    while (prechatForm.firstChild) prechatForm.removeChild(prechatForm.firstChild);
    prechatForm.appendChild(el("p", { text: T.prechatIntro }));
    var anyRequired = false;
    var first = null;
    var firstHasError = false;
    names.forEach(function (name) {
      var required = fields[name] === "required";
      anyRequired = anyRequired || required;
      var error = errors && errors[name];
      var field = el("input", {
        id: "hd-pc-" + name, name: name,
        type: name === "email" ? "email" : name === "phone" ? "tel" : "text",
        autocomplete: name === "name" ? "name" : name === "email" ? "email" : "tel",
        required: required, "aria-invalid": error ? "true" : null,
        "aria-describedby": error ? "hd-pc-" + name + "-err" : null,
        value: (load("prechat", {}) || {})[name] || ""
      });
      if (!first || (error && !firstHasError)) {
        first = field;
        firstHasError = !!error;
      }
      prechatForm.appendChild(el("div", { className: "field" }, [
        el("label", { for: "hd-pc-" + name }, [
          T[name] + " ", el("span", { text: "(" + (required ? T.required : T.optional) + ")" })
        ]),
        field,
        error ? el("div", { className: "err", id: "hd-pc-" + name + "-err", text: error }) : null
      ]));
    });
    var actions = el("div", { className: "actions" });
    if (!anyRequired) {
      actions.appendChild(el("button", {
        type: "button", className: "secondary", text: T.skip,
        onclick: function () { save("prechat-skipped", true); hidePrechat(); }
      }));
    }
    actions.appendChild(el("button", { type: "submit", className: "primary", text: T.start }));
    prechatForm.appendChild(actions);
    prechatForm.hidden = false;
    composer.hidden = true;
    foot.hidden = true;
    if (state.open && first) first.focus();
    return true;
  }

  function hidePrechat() {
    prechatForm.hidden = true;
    composer.hidden = false;
    foot.hidden = false;
    if (state.open) input.focus();
    flush();
  }

  prechatForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var values = {};
    ["name", "email", "phone"].forEach(function (name) {
      var field = prechatForm.querySelector("[name=" + name + "]");
      if (field) values[name] = field.value.trim();
    });
    var errors = {};
    Object.keys(values).forEach(function (name) {
      if (state.prechat.fields[name] === "required" && !values[name]) errors[name] = T.prechat_required;
    });
    if (Object.keys(errors).length) { showPrechat(errors); return; }
    save("prechat", values); // refill the form if the server finds a mistake
    transmit({ type: "prechat", name: values.name || "", email: values.email || "", phone: values.phone || "" });
  });

  function prechatWanted(hadHistory) {
    var fields = state.prechat.fields || {};
    if (state.prechat.done || !Object.keys(fields).length) return false;
    var anyRequired = Object.keys(fields).some(function (n) { return fields[n] === "required"; });
    return anyRequired || (!hadHistory && !load("prechat-skipped", false));
  }

  // ------------------------------------------------------------------ sending

  function transmit(frame) {
    var socket = state.socket;
    if (!socket || socket.readyState !== 1) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function canSend() {
    return state.greeted && !state.stopped && prechatForm.hidden && Date.now() >= state.holdUntil;
  }

  function sendItem(item) {
    if (!canSend()) { markMine(item.client_id, state.greeted ? "sending" : "waiting"); return; }
    var frame = item.button
      ? { type: "button", client_id: item.client_id, id: item.button }
      : { type: "message", client_id: item.client_id, text: item.text, page: location.href };
    markMine(item.client_id, transmit(frame) ? "sending" : "waiting");
  }

  // Re-sends everything not acked yet, with the same client_id: the server stores each
  // message once, whatever happened to the connection in between.
  function flush() {
    state.pending.forEach(sendItem);
  }

  function queue(item) {
    state.pending.push(item);
    save("pending", state.pending);
    renderMine(item, null);
    scrollDown();
    if (!state.socket) connect();
    sendItem(item);
  }

  function forget(clientId) {
    state.pending = state.pending.filter(function (item) { return item.client_id !== clientId; });
    save("pending", state.pending);
  }

  function pressButton(id, label, group) {
    Array.prototype.forEach.call(group.querySelectorAll("button"), function (b) { b.disabled = true; });
    queue({ client_id: newClientId(), button: id, label: label });
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.replace(/^\s+|\s+$/g, "");
    if (!text || state.stopped) return;
    if (text.length > 4000) { notice(T.tooLong); return; }
    input.value = "";
    autosize();
    queue({ client_id: newClientId(), text: text });
    input.focus();
  });

  input.addEventListener("keydown", function (event) {
    // Never while an input method is composing (Chinese, Japanese...): Enter picks the word.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      composer.requestSubmit ? composer.requestSubmit() : composer.dispatchEvent(new Event("submit"));
    }
  });
  input.addEventListener("input", autosize);

  // ------------------------------------------------------------------ frames from the server

  function onHello(frame) {
    state.greeted = true;
    state.attempts = 0;
    state.token = frame.token;
    save("token", frame.token);
    applyConfig(frame.config);
    state.prechat = frame.prechat || { fields: {}, done: true };
    setStatus("online");

    // Rebuild the log from the server's history: it is the truth after any gap. Screen
    // readers should not read the whole conversation again after a reconnect.
    log.setAttribute("aria-live", "off");
    setTimeout(function () { log.setAttribute("aria-live", "polite"); }, 500);
    while (log.firstChild) log.removeChild(log.firstChild);
    state.seen = {};
    state.rendered = {};
    renderGreeting();
    var history = Array.isArray(frame.history) ? frame.history : [];
    var pendingIds = {};
    state.pending.forEach(function (item) { pendingIds[item.client_id] = true; });
    history.forEach(function (message) {
      if (message.author === "customer") {
        var node = renderMine({ client_id: message.client_id || "h" + message.id, text: message.text }, message.at);
        markMine(message.client_id || "h" + message.id, "sent");
        if (pendingIds[message.client_id]) forget(message.client_id); // stored, ack was lost
        return node;
      }
      return renderTheirs(message);
    });
    state.pending.forEach(function (item) { renderMine(item, null); });
    scrollDown();

    if (prechatWanted(history.length > 0)) showPrechat();
    else {
      prechatForm.hidden = true;
      composer.hidden = false;
      foot.hidden = false;
    }
    flush();
  }

  function onMessage(frame) {
    if (frame.author === "customer") {
      // Written in another tab (ours are already on screen).
      if (frame.client_id && state.rendered[frame.client_id]) return;
      var text = frame.text || "";
      if (!text) return;
      renderMine({ client_id: frame.client_id || newClientId(), text: text }, frame.at);
      markMine(frame.client_id, "sent");
      scrollDown();
      return;
    }
    var node = renderTheirs(frame);
    if (!node) return;
    scrollDown();
    if (!state.open || document.hidden) setUnread(state.unread + 1);
  }

  function onError(frame) {
    var code = frame.code;
    var clientId = frame.client_id;
    if (code === "rate_limited") {
      var wait = Math.max(1, Number(frame.retry_after) || 5);
      state.holdUntil = Date.now() + wait * 1000;
      if (clientId) markMine(clientId, "retrying");
      notice(T.rate);
      setTimeout(flush, wait * 1000 + 50);
      return;
    }
    if (code === "unavailable" && clientId) {
      markMine(clientId, "retrying");
      setTimeout(function () {
        var item = state.pending.filter(function (i) { return i.client_id === clientId; })[0];
        if (item) sendItem(item);
      }, 3000);
      return;
    }
    if (code === "prechat_required" || code === "invalid_email" || code === "invalid_phone" ||
        code === "invalid_name") {
      var errors = {};
      if (frame.field) errors[frame.field] = T[code] || T.prechat_required;
      if (clientId) markMine(clientId, "waiting");
      showPrechat(errors);
      return;
    }
    if (clientId) {
      // The server will never take this one (too long, a stale button...): stop retrying.
      forget(clientId);
      markMine(clientId, "failed");
      if (code === "too_long") notice(T.tooLong);
    }
  }

  function onFrame(event) {
    var frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "hello": onHello(frame); break;
      case "ack":
        forget(frame.client_id);
        markMine(frame.client_id, "sent");
        break;
      case "message": onMessage(frame); break;
      case "prechat":
        state.token = frame.token;
        save("token", frame.token);
        save("prechat", null);
        state.prechat.done = true;
        hidePrechat();
        break;
      case "error": onError(frame); break;
      default: break;
    }
  }

  // ------------------------------------------------------------------ the connection

  function connect() {
    if (state.stopped || state.socket) return;
    clearTimeout(state.retryTimer);
    setStatus(state.attempts ? "reconnecting" : "connecting");
    var socket;
    try {
      socket = new WebSocket(SOCKET_URL);
    } catch (e) {
      scheduleReconnect(1000);
      return;
    }
    state.socket = socket;
    socket.onopen = function () {
      transmit({ type: "hello", token: state.token, lang: LANG, page: location.href });
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(function () { transmit({ type: "ping" }); }, PING_EVERY);
    };
    socket.onmessage = onFrame;
    socket.onclose = function (event) {
      if (state.socket !== socket) return;
      state.socket = null;
      state.greeted = false;
      clearInterval(state.pingTimer);
      if (event.code === CLOSE_ORIGIN || event.code === CLOSE_UNKNOWN) {
        state.stopped = true;
        if (window.console) {
          console.warn(event.code === CLOSE_ORIGIN
            ? "helpdesk widget: " + location.origin + " is not in the allowed_origins of chat channel " + CHANNEL
            : "helpdesk widget: there is no active chat channel " + CHANNEL);
        }
        setStatus("unavailable");
        state.pending.forEach(function (item) { markMine(item.client_id, "failed"); });
        return;
      }
      state.pending.forEach(function (item) { markMine(item.client_id, "waiting"); });
      setStatus("reconnecting");
      state.attempts += 1;
      // Exponential backoff with jitter, so a restarted server is not hit by every
      // visitor at the same instant; a rate-limited client waits a full minute.
      var delay = event.code === CLOSE_RATE
        ? 60000
        : Math.min(30000, 1000 * Math.pow(2, Math.min(state.attempts - 1, 5)));
      scheduleReconnect(delay * (0.75 + Math.random() * 0.5));
    };
  }

  function scheduleReconnect(delay) {
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (!state.socket && !state.stopped && (state.open || state.token)) {
      state.attempts = Math.min(state.attempts, 1);
      connect();
    }
  }
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      reconnectNow();
      if (state.open) setUnread(0);
    }
  });

  // ------------------------------------------------------------------ open / close

  function openPanel() {
    state.open = true;
    sessionFlag("open", true);
    panel.hidden = false;
    root.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    setUnread(0);
    if (!state.socket) connect();
    scrollDown();
    var target = !prechatForm.hidden ? prechatForm.querySelector("input") : input;
    if (target) target.focus();
  }

  function closePanel() {
    root.classList.remove("still");
    state.open = false;
    sessionFlag("open", false);
    panel.hidden = true;
    root.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (state.open) closePanel();
    else openPanel();
  });
  closeButton.addEventListener("click", closePanel);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.stopPropagation();
      closePanel();
    }
  });

  function start() {
    document.body.appendChild(host);
    // Stay open across the pages of one visit; connect at once for a returning visitor so
    // an agent's answer shows up (with a badge) even before they open the chat.
    if (sessionFlag("open")) {
      root.classList.add("still"); // the same panel as on the last page: no entrance
      openPanel();
    }
    else if (state.token || state.pending.length) connect();
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
