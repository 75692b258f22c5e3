/*
 * Parley chat widget. Embed with:
 *   <script src="https://HOST/static/parley/widget.js" data-parley-host="https://HOST"
 *           data-collection="default" async></script>
 * Plain JS, no dependencies: it runs on other people's pages, so it must not
 * need a build step, pollute globals, or let styles cross the shadow boundary.
 */
(function () {
  "use strict";

  // currentScript is null when we run from a callback; the selector is the fallback.
  var script = document.currentScript || document.querySelector('script[src*="parley/widget.js"]');
  if (!script || document.getElementById("parley-widget")) return; // loaded twice: keep the first

  var scriptOrigin = new URL(script.src, location.href).origin;
  var data = script.dataset;
  var host = (data.parleyHost || scriptOrigin).replace(/\/+$/, "");
  var collection = data.collection || "default";
  var title = data.title || "Ask us";
  var greeting = data.greeting || "Hi! Ask me anything about our services.";
  var lang = data.lang || document.documentElement.lang || "en";
  // Validate the colour so a page attribute can never inject CSS.
  var color = data.color && window.CSS && CSS.supports("color", data.color) ? data.color : "#2563eb";
  var storageKey = "parley:conversation:" + collection;
  var MAX_LEN = 2000;

  var STYLES = [
    ":host { all: initial; }",
    ".parley-root { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #0f172a; }",
    ".parley-root *, .parley-root *::before { box-sizing: border-box; }",
    ".parley-launcher { width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;",
    "  background: var(--parley-color); color: #fff; box-shadow: 0 6px 20px rgba(0,0,0,.25);",
    "  display: flex; align-items: center; justify-content: center; margin-left: auto; }",
    ".parley-launcher svg { width: 26px; height: 26px; fill: currentColor; }",
    "button:focus-visible, .parley-input:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }",
    ".parley-panel { position: absolute; right: 0; bottom: 72px; width: 370px; height: 540px;",
    "  max-height: calc(100vh - 110px); background: #fff; border-radius: 16px; overflow: hidden;",
    "  box-shadow: 0 12px 40px rgba(0,0,0,.25); display: flex; flex-direction: column; }",
    ".parley-panel[hidden] { display: none; }",
    ".parley-header { background: var(--parley-color); color: #fff; padding: 12px 14px;",
    "  display: flex; align-items: center; justify-content: space-between; }",
    ".parley-title { margin: 0; font-size: 16px; font-weight: 600; }",
    ".parley-close { background: transparent; border: 0; color: #fff; font-size: 24px; line-height: 1;",
    "  cursor: pointer; padding: 2px 8px; border-radius: 6px; }",
    ".parley-log { flex: 1; overflow-y: auto; padding: 14px; background: #f8fafc;",
    "  display: flex; flex-direction: column; gap: 10px; }",
    ".parley-msg { max-width: 85%; padding: 9px 12px; border-radius: 14px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".parley-user { align-self: flex-end; background: var(--parley-color); color: #fff; border-bottom-right-radius: 4px; }",
    ".parley-bot, .parley-agent { align-self: flex-start; background: #fff; border: 1px solid #e2e8f0;",
    "  border-bottom-left-radius: 4px; }",
    ".parley-agent { border-color: #a7f3d0; background: #ecfdf5; }",
    ".parley-agent-name { display: block; font-size: 12px; font-weight: 600; color: #047857; }",
    ".parley-error { align-self: stretch; max-width: none; background: #fef2f2; color: #991b1b;",
    "  border: 1px solid #fecaca; font-size: 14px; }",
    ".parley-note { align-self: center; font-size: 13px; color: #475569; }",
    ".parley-sources { margin-top: 8px; padding-top: 6px; border-top: 1px solid #e2e8f0; font-size: 13px; white-space: normal; }",
    ".parley-sources-label { font-weight: 600; color: #475569; }",
    ".parley-sources ul { margin: 4px 0 0; padding: 0; list-style: none; }",
    ".parley-source { color: var(--parley-color); }",
    ".parley-typing span { display: inline-block; width: 6px; height: 6px; margin: 0 2px; border-radius: 50%;",
    "  background: #94a3b8; animation: parley-blink 1.2s infinite; }",
    ".parley-typing span:nth-child(2) { animation-delay: .2s; } .parley-typing span:nth-child(3) { animation-delay: .4s; }",
    "@keyframes parley-blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }",
    "@media (prefers-reduced-motion: reduce) { .parley-typing span { animation: none; } }",
    ".parley-form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e2e8f0; background: #fff; }",
    ".parley-input { flex: 1; resize: none; border: 1px solid #cbd5e1; border-radius: 10px; padding: 8px 10px;",
    "  font: inherit; color: inherit; max-height: 120px; min-height: 40px; }",
    ".parley-send { border: 0; border-radius: 10px; padding: 0 16px; background: var(--parley-color);",
    "  color: #fff; font: inherit; font-weight: 600; cursor: pointer; }",
    ".parley-send:disabled, .parley-input:disabled { opacity: .6; cursor: not-allowed; }",
    // Narrow screens: the panel takes the whole viewport so a 360px phone stays usable.
    "@media (max-width: 480px) { .parley-root { right: 12px; bottom: 12px; }",
    "  .parley-panel { position: fixed; inset: 0; width: 100%; height: 100%; max-height: none; border-radius: 0; } }",
  ].join("\n");

  // Small DOM helper; text goes in via textContent only, never innerHTML.
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }

  function storageGet() { try { return localStorage.getItem(storageKey); } catch (e) { return null; } }
  function storageSet(v) { try { localStorage.setItem(storageKey, v); } catch (e) { /* storage blocked: memory only */ } }

  // ---- DOM -------------------------------------------------------------
  var hostEl = el("div", { id: "parley-widget", lang: lang });
  var shadow = hostEl.attachShadow({ mode: "open" });
  var style = el("style", {}, STYLES);
  var root = el("div", { class: "parley-root" });
  root.style.setProperty("--parley-color", color);

  var launcher = el("button", {
    type: "button", class: "parley-launcher", part: "launcher",
    "aria-label": "Open chat", "aria-expanded": "false", "aria-controls": "parley-panel",
  });
  // Static icon markup, no server data involved.
  launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';

  var panel = el("div", { id: "parley-panel", class: "parley-panel", role: "dialog", "aria-label": title });
  panel.hidden = true;
  var header = el("div", { class: "parley-header" });
  var closeBtn = el("button", { type: "button", class: "parley-close", "aria-label": "Close chat" }, "×");
  header.append(el("h2", { class: "parley-title" }, title), closeBtn);
  var log = el("div", { class: "parley-log", role: "log", "aria-live": "polite" });
  var form = el("form", { class: "parley-form" });
  var input = el("textarea", {
    class: "parley-input", "aria-label": "Your message", maxlength: String(MAX_LEN),
    rows: "1", placeholder: "Type your question…",
  });
  var sendBtn = el("button", { type: "submit", class: "parley-send" }, "Send");
  form.append(input, sendBtn);
  panel.append(header, log, form);
  root.append(panel, launcher);
  shadow.append(style, root);

  // ---- Messages --------------------------------------------------------
  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addBubble(kind, text) {
    var bubble = el("div", { class: "parley-msg parley-" + kind }, text);
    log.appendChild(bubble);
    scrollDown();
    return bubble;
  }

  function addError(text) { return addBubble("error", text || "Something went wrong."); }

  // The bot reply being streamed: {bubble, text (a Text node), typing}.
  var current = null;
  var lastBot = null; // citations may arrive after "done"

  function startBotReply() {
    var bubble = el("div", { class: "parley-msg parley-bot" });
    var typing = el("span", { class: "parley-typing", role: "img", "aria-label": "Assistant is typing" });
    typing.append(el("span"), el("span"), el("span"));
    var text = document.createTextNode("");
    bubble.append(text, typing);
    log.appendChild(bubble);
    scrollDown();
    current = { bubble: bubble, text: text, typing: typing };
    lastBot = current;
  }

  function stopTyping(reply) {
    if (reply && reply.typing) { reply.typing.remove(); reply.typing = null; }
  }

  function appendToken(t) {
    if (!current) startBotReply();
    stopTyping(current);
    current.text.appendData(String(t)); // a text node: server text can never become markup
    scrollDown();
  }

  // Only http(s) and site-relative links become hrefs; javascript: and friends stay plain text.
  function safeHref(url) {
    if (typeof url !== "string") return null;
    var lower = url.trim().toLowerCase();
    if (!(lower.indexOf("http://") === 0 || lower.indexOf("https://") === 0 || lower.charAt(0) === "/")) return null;
    try {
      var u = new URL(url.trim(), host + "/");
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  function renderCitations(items) {
    var target = current || lastBot;
    if (!target || !Array.isArray(items) || !items.length) return;
    var box = el("div", { class: "parley-sources" });
    var list = el("ul");
    box.append(el("span", { class: "parley-sources-label" }, "Sources"), list);
    items.forEach(function (item) {
      if (!item || typeof item !== "object") return;
      var label = "[" + item.n + "] " + (item.title || "Untitled");
      var href = safeHref(item.url);
      var link = href
        ? el("a", { class: "parley-source", href: href, target: "_blank", rel: "noopener noreferrer" }, label)
        : el("span", { class: "parley-source" }, label);
      if (item.snippet) link.title = String(item.snippet);
      var li = el("li");
      li.appendChild(link);
      list.appendChild(li);
    });
    target.bubble.appendChild(box);
    scrollDown();
  }

  function finishReply(messageId) {
    if (!current) return;
    stopTyping(current);
    if (messageId != null) current.bubble.setAttribute("data-message-id", String(messageId));
    current = null;
  }

  // A reply that failed before any text arrived leaves no empty bubble behind.
  function abandonReply() {
    if (current && !current.text.data) { current.bubble.remove(); if (lastBot === current) lastBot = null; }
    else finishReply(null);
    current = null;
  }

  function setBusy(busy) {
    input.disabled = busy;
    sendBtn.disabled = busy;
    if (!busy && !panel.hidden) input.focus();
  }

  // ---- Connection ------------------------------------------------------
  var conversationId = storageGet();
  var socket = null;
  var retryDelay = 1000;
  var retryTimer = null;

  function wsUrl() {
    var u = new URL(host + "/");
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = u.pathname.replace(/\/+$/, "") + "/ws/chat/";
    u.search = "?collection=" + encodeURIComponent(collection);
    return u.href;
  }

  function connect() {
    if (socket || retryTimer) return;
    try { socket = new WebSocket(wsUrl()); } catch (e) { socket = null; scheduleReconnect(); return; }
    socket.addEventListener("open", function () {
      retryDelay = 1000;
      if (pending) { socket.send(pending); pending = null; } // typed while the socket was opening
    });
    socket.addEventListener("message", function (ev) { handleFrame(ev.data); });
    socket.addEventListener("close", function () {
      socket = null;
      pending = null;
      // A reply cut off mid-stream will never finish: say so and let the user try again.
      if (current) { abandonReply(); addError("Connection lost — retrying…"); setBusy(false); }
      scheduleReconnect();
    });
    // "error" is always followed by "close", which does the work.
  }

  // Exponential backoff (1s, 2s, 4s … 30s) so a down server is not hammered.
  function scheduleReconnect() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  function handleFrame(raw) {
    var frame;
    try { frame = JSON.parse(raw); } catch (e) { return; } // not ours: ignore rather than crash
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "conversation":
        if (frame.id != null) { conversationId = String(frame.id); storageSet(conversationId); }
        break;
      case "token":
        if (frame.text != null) appendToken(frame.text);
        break;
      case "citations":
        renderCitations(frame.items);
        break;
      case "done":
        finishReply(frame.message);
        if (frame.handoff) addBubble("note", "A member of our team will join this chat shortly.");
        setBusy(false);
        break;
      case "agent_message":
        var bubble = addBubble("agent", "");
        bubble.append(el("span", { class: "parley-agent-name" }, frame.agent || "Agent"),
          document.createTextNode(frame.text == null ? "" : String(frame.text)));
        scrollDown();
        break;
      case "error":
        if (frame.code === "unknown_conversation" && conversationId && lastSent) {
          // The stored conversation is gone (erased, or a reinstalled server): start afresh
          // and send the same question again rather than failing forever.
          conversationId = null;
          storageSet("");
          socket.send(JSON.stringify({ type: "message", text: lastSent, conversation: null }));
          break;
        }
        abandonReply();
        addError(frame.message ? String(frame.message) : null);
        setBusy(false);
        break;
    }
  }

  var lastSent = null;
  var pending = null;

  function send() {
    var text = input.value.trim();
    if (!text || input.disabled) return;
    var opening = socket && socket.readyState === WebSocket.CONNECTING;
    if (!opening && (!socket || socket.readyState !== WebSocket.OPEN)) {
      // Disconnected: the text stays in the box for the user to resend once we are back.
      addError("Not connected — retrying…");
      connect();
      return;
    }
    lastSent = text.slice(0, MAX_LEN);
    var frame = JSON.stringify({ type: "message", text: lastSent, conversation: conversationId || null });
    // Opening (the panel was just opened): send as soon as the socket is up. If it fails to
    // open, the close handler reports the lost reply, so nothing is dropped silently.
    if (opening) pending = frame; else socket.send(frame);
    addBubble("user", text);
    input.value = "";
    setBusy(true);
    startBotReply();
  }

  // ---- Open / close ----------------------------------------------------
  var started = false;

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true"); // label stays "Open chat"; aria-expanded carries the state
    if (!started) { started = true; addBubble("bot", greeting); connect(); } // connect lazily: no socket per page view
    input.focus();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () { if (panel.hidden) open(); else close(); });
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { ev.preventDefault(); close(); } });
  form.addEventListener("submit", function (ev) { ev.preventDefault(); send(); });
  input.addEventListener("keydown", function (ev) {
    // Enter sends, Shift+Enter is a newline; leave IME composition alone.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
  });

  // An async script can run before <body> exists.
  function mount() { document.body.appendChild(hostEl); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
