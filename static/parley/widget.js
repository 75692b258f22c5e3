/*
 * Parley chat widget. Embed with:
 *   <script src="https://HOST/static/parley/widget.js" data-parley-host="https://HOST"
 *           data-collection="default" async></script>
 * Optional: data-site, data-title, data-greeting, data-color, data-lang (these win over the
 * per-site settings the server sends in its "config" frame).
 * Plain JS, no dependencies: it runs on other people's pages, so it must not
 * need a build step, pollute globals, make third-party requests, or let styles cross the
 * shadow boundary.
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
  var site = data.site || "";
  var siteKey = site || collection;
  var storageKey = "parley:conversation:" + siteKey;
  var visitorKey = "parley:visitor:" + siteKey;
  var MAX_LEN = 2000;
  var DEFAULT_COLOR = "#2563eb";

  // Every UI string, per language. A key missing in one language falls back to English.
  var STRINGS = {
    en: {
      title: "Ask us",
      greeting: "Hi! Ask me anything about our services.",
      open: "Open chat",
      close: "Close chat",
      input: "Your message",
      placeholder: "Type your question…",
      send: "Send",
      sendLabel: "Send message",
      typing: "Assistant is typing",
      sources: "Sources",
      handoff: "Talk to a person",
      handoffLabel: "Talk to a person from our team",
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      willSend: "Your message will be sent when the connection is back.",
      statusQueued: "Waiting for a person to join…",
      statusJoined: "You are chatting with {agent}",
      statusLine: "Many questions right now: you are number {n} in line (about {s} s).",
      noteQueued: "Waiting for a person to join…",
      noteJoined: "{agent} joined the chat",
      noteBot: "You are back with the assistant",
      noteClosed: "The conversation was closed",
      agent: "Team member",
      error: "Something went wrong.",
      cooldown: "You can send again in {n} s.",
      interrupted: "The connection dropped while answering.",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      thanks: "Thanks for your feedback!",
      download: "Download my chats",
      erase: "Delete my chats",
      eraseConfirm: "Delete all your conversations with us? This cannot be undone.",
      erased: "Your conversations were deleted.",
      agentTyping: "{agent} is typing",
      offlineNobody: "Nobody from our team is online right now.",
      offlineBack: "We're back {when}.",
      offlineReply: "We usually reply {time}.",
      offlineAsk: "Leave your email address and we'll answer you there.",
      offlineForm: "Get an answer by email",
      emailLabel: "Your email",
      nameLabel: "Your name (optional)",
      questionLabel: "Your question",
      emailSend: "Send",
      emailSending: "Sending…",
      emailMissing: "Please enter your email address.",
      emailOffline: "No connection right now; please try again in a moment.",
      emailThanks: "Thanks, we'll answer at {email}.",
      ticketStatus: "We'll answer you by email at {email}.",
    },
    de: {
      title: "Fragen Sie uns",
      greeting: "Hallo! Fragen Sie mich alles zu unseren Leistungen.",
      open: "Chat öffnen",
      close: "Chat schließen",
      input: "Ihre Nachricht",
      placeholder: "Ihre Frage…",
      send: "Senden",
      sendLabel: "Nachricht senden",
      typing: "Der Assistent schreibt",
      sources: "Quellen",
      handoff: "Mit einem Menschen sprechen",
      handoffLabel: "Mit einer Person aus unserem Team sprechen",
      connecting: "Verbinde…",
      reconnecting: "Verbindung wird wiederhergestellt…",
      willSend: "Ihre Nachricht wird gesendet, sobald die Verbindung wieder steht.",
      statusQueued: "Warten auf eine Person…",
      statusJoined: "Sie chatten mit {agent}",
      statusLine: "Gerade viele Fragen: Sie sind Nummer {n} in der Warteschlange (etwa {s} s).",
      noteQueued: "Warten auf eine Person…",
      noteJoined: "{agent} ist dem Chat beigetreten",
      noteBot: "Sie sind wieder beim Assistenten",
      noteClosed: "Das Gespräch wurde beendet",
      agent: "Teammitglied",
      error: "Etwas ist schiefgelaufen.",
      cooldown: "Sie können in {n} s wieder senden.",
      interrupted: "Die Verbindung brach während der Antwort ab.",
      helpful: "Hilfreich",
      notHelpful: "Nicht hilfreich",
      thanks: "Danke für Ihr Feedback!",
      download: "Meine Chats herunterladen",
      erase: "Meine Chats löschen",
      eraseConfirm: "Alle Ihre Unterhaltungen mit uns löschen? Das lässt sich nicht rückgängig machen.",
      erased: "Ihre Unterhaltungen wurden gelöscht.",
      agentTyping: "{agent} schreibt",
      offlineNobody: "Gerade ist niemand aus unserem Team online.",
      offlineBack: "Wir sind {when} wieder da.",
      offlineReply: "Wir antworten normalerweise {time}.",
      offlineAsk: "Hinterlassen Sie Ihre E-Mail-Adresse, dann antworten wir Ihnen dort.",
      offlineForm: "Antwort per E-Mail erhalten",
      emailLabel: "Ihre E-Mail-Adresse",
      nameLabel: "Ihr Name (optional)",
      questionLabel: "Ihre Frage",
      emailSend: "Senden",
      emailSending: "Wird gesendet…",
      emailMissing: "Bitte geben Sie Ihre E-Mail-Adresse ein.",
      emailOffline: "Gerade keine Verbindung; bitte versuchen Sie es gleich noch einmal.",
      emailThanks: "Danke, wir antworten an {email}.",
      ticketStatus: "Wir antworten Ihnen per E-Mail an {email}.",
    },
    fr: {
      title: "Posez-nous une question",
      greeting: "Bonjour ! Posez-moi vos questions sur nos services.",
      open: "Ouvrir le chat",
      close: "Fermer le chat",
      input: "Votre message",
      placeholder: "Votre question…",
      send: "Envoyer",
      sendLabel: "Envoyer le message",
      typing: "L’assistant écrit",
      sources: "Sources",
      handoff: "Parler à une personne",
      handoffLabel: "Parler à une personne de notre équipe",
      connecting: "Connexion…",
      reconnecting: "Reconnexion…",
      willSend: "Votre message sera envoyé dès le retour de la connexion.",
      statusQueued: "En attente d’une personne…",
      statusJoined: "Vous discutez avec {agent}",
      statusLine: "Beaucoup de questions en ce moment : vous êtes numéro {n} dans la file (environ {s} s).",
      noteQueued: "En attente d’une personne…",
      noteJoined: "{agent} a rejoint la conversation",
      noteBot: "Vous êtes de retour avec l’assistant",
      noteClosed: "La conversation a été fermée",
      agent: "Membre de l’équipe",
      error: "Une erreur s’est produite.",
      cooldown: "Vous pourrez renvoyer dans {n} s.",
      interrupted: "La connexion a été perdue pendant la réponse.",
      helpful: "Utile",
      notHelpful: "Pas utile",
      thanks: "Merci pour votre avis !",
      download: "Télécharger mes conversations",
      erase: "Supprimer mes conversations",
      eraseConfirm: "Supprimer toutes vos conversations avec nous ? C'est définitif.",
      erased: "Vos conversations ont été supprimées.",
      agentTyping: "{agent} écrit",
      offlineNobody: "Personne de notre équipe n’est en ligne pour le moment.",
      offlineBack: "Nous serons de retour {when}.",
      offlineReply: "Nous répondons généralement {time}.",
      offlineAsk: "Laissez votre adresse e-mail et nous vous répondrons par e-mail.",
      offlineForm: "Recevoir une réponse par e-mail",
      emailLabel: "Votre e-mail",
      nameLabel: "Votre nom (facultatif)",
      questionLabel: "Votre question",
      emailSend: "Envoyer",
      emailSending: "Envoi…",
      emailMissing: "Veuillez saisir votre adresse e-mail.",
      emailOffline: "Pas de connexion pour le moment ; veuillez réessayer dans un instant.",
      emailThanks: "Merci, nous répondrons à {email}.",
      ticketStatus: "Nous vous répondrons par e-mail à {email}.",
    },
  };

  var STYLES = [
    ":host { all: initial; }",
    ".parley-root { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #0f172a; }",
    ".parley-root *, .parley-root *::before { box-sizing: border-box; }",
    ".parley-root [hidden] { display: none !important; }",
    ".parley-launcher { width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;",
    "  background: var(--parley-color); color: #fff; box-shadow: 0 6px 20px rgba(0,0,0,.25);",
    "  display: flex; align-items: center; justify-content: center; margin-left: auto; }",
    ".parley-launcher svg { width: 26px; height: 26px; fill: currentColor; }",
    "button:focus-visible, .parley-input:focus-visible, a:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }",
    ".parley-panel { position: absolute; right: 0; bottom: 72px; width: 370px; height: 540px;",
    "  max-height: calc(100vh - 110px); background: #fff; border-radius: 16px; overflow: hidden;",
    "  box-shadow: 0 12px 40px rgba(0,0,0,.25); display: flex; flex-direction: column; }",
    ".parley-header { background: var(--parley-color); color: #fff; padding: 12px 14px;",
    "  display: flex; align-items: center; gap: 8px; }",
    ".parley-title { margin: 0; font-size: 16px; font-weight: 600; flex: 1; min-width: 0; }",
    ".parley-close { background: transparent; border: 0; color: #fff; font-size: 24px; line-height: 1;",
    "  cursor: pointer; padding: 2px 8px; border-radius: 6px; }",
    ".parley-handoff { background: rgba(255,255,255,.15); border: 1px solid rgba(255,255,255,.6); color: #fff;",
    "  font: inherit; font-size: 13px; padding: 3px 9px; border-radius: 999px; cursor: pointer; white-space: nowrap; }",
    ".parley-handoff:disabled { opacity: .55; cursor: default; }",
    ".parley-status { padding: 6px 14px; font-size: 13px; background: #fffbeb; color: #92400e;",
    "  border-bottom: 1px solid #fde68a; }",
    ".parley-log { flex: 1; overflow-y: auto; padding: 14px; background: #f8fafc;",
    "  display: flex; flex-direction: column; gap: 10px; }",
    ".parley-msg { max-width: 85%; padding: 9px 12px; border-radius: 14px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".parley-user { align-self: flex-end; background: var(--parley-color); color: #fff; border-bottom-right-radius: 4px; }",
    ".parley-bot, .parley-agent { align-self: flex-start; background: #fff; border: 1px solid #e2e8f0;",
    "  border-bottom-left-radius: 4px; white-space: normal; }",
    ".parley-agent { border-color: #a7f3d0; background: #ecfdf5; }",
    ".parley-agent-name { font-size: 12px; font-weight: 600; color: #047857; }",
    ".parley-agent-head { display: flex; align-items: center; gap: 6px; margin-bottom: 2px; }",
    ".parley-avatar { flex: none; width: 24px; height: 24px; border-radius: 50%; background: #047857; color: #fff;",
    "  font-size: 11px; font-weight: 700; display: inline-flex; align-items: center; justify-content: center; }",
    ".parley-offline { align-self: stretch; max-width: none; background: #fff; border: 1px solid #cbd5e1; white-space: normal; }",
    ".parley-offline p { margin: 0 0 6px; }",
    ".parley-email-form { display: flex; flex-direction: column; gap: 8px; margin-top: 8px; }",
    ".parley-email-form label { display: flex; flex-direction: column; gap: 3px; font-size: 13px; font-weight: 600; color: #334155; }",
    ".parley-email-form input, .parley-email-form textarea { font: inherit; font-weight: 400; color: inherit;",
    "  border: 1px solid #cbd5e1; border-radius: 8px; padding: 7px 9px; }",
    ".parley-email-form input:focus-visible, .parley-email-form textarea:focus-visible { outline: 3px solid #f59e0b; outline-offset: 1px; }",
    ".parley-email-error { margin: 0; color: #991b1b; font-size: 13px; }",
    ".parley-email-send { align-self: flex-start; border: 0; border-radius: 10px; padding: 7px 16px; background: var(--parley-color);",
    "  color: #fff; font: inherit; font-weight: 600; cursor: pointer; }",
    ".parley-email-send:disabled { opacity: .6; cursor: default; }",
    ".parley-ticket-thanks { margin: 0; font-weight: 600; color: #047857; }",
    ".parley-md > * { margin: 0; } .parley-md > * + * { margin-top: 6px; }",
    ".parley-md ul, .parley-md ol { padding-left: 20px; }",
    ".parley-md code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background: #f1f5f9;",
    "  padding: 1px 4px; border-radius: 4px; }",
    ".parley-md pre { white-space: pre-wrap; background: #f1f5f9; padding: 6px 8px; border-radius: 6px; }",
    ".parley-md pre code { padding: 0; }",
    ".parley-md a, .parley-cite { color: var(--parley-color); }",
    ".parley-error { align-self: stretch; max-width: none; background: #fef2f2; color: #991b1b;",
    "  border: 1px solid #fecaca; font-size: 14px; }",
    ".parley-note { align-self: center; font-size: 13px; color: #475569; text-align: center; }",
    ".parley-sources { margin-top: 8px; padding-top: 6px; border-top: 1px solid #e2e8f0; font-size: 13px; white-space: normal; }",
    ".parley-sources-label { font-weight: 600; color: #475569; }",
    ".parley-sources ul { margin: 4px 0 0; padding: 0; list-style: none; }",
    ".parley-source { color: var(--parley-color); }",
    ".parley-extras:empty { display: none; }",
    ".parley-extras { margin-top: 6px; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 13px; }",
    ".parley-extras button { font: inherit; font-size: 13px; border: 1px solid #cbd5e1; background: #fff; color: #0f172a;",
    "  border-radius: 999px; padding: 2px 10px; cursor: pointer; }",
    ".parley-extras button[aria-pressed=true] { border-color: var(--parley-color); color: var(--parley-color); }",
    ".parley-feedback { display: inline-flex; align-items: center; }",
    ".parley-feedback svg { width: 14px; height: 14px; fill: currentColor; }",
    ".parley-feedback-down svg { transform: rotate(180deg); }",
    ".parley-extras button:disabled { opacity: .6; cursor: default; }",
    ".parley-offer { border-color: var(--parley-color) !important; color: var(--parley-color) !important; }",
    ".parley-typing span { display: inline-block; width: 6px; height: 6px; margin: 0 2px; border-radius: 50%;",
    "  background: #94a3b8; animation: parley-blink 1.2s infinite; }",
    ".parley-typing span:nth-child(2) { animation-delay: .2s; } .parley-typing span:nth-child(3) { animation-delay: .4s; }",
    "@keyframes parley-blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }",
    "@media (prefers-reduced-motion: reduce) { .parley-typing span { animation: none; } }",
    ".parley-hint { padding: 4px 10px 0; font-size: 12px; color: #475569; background: #fff; }",
    ".parley-form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e2e8f0; background: #fff; }",
    ".parley-privacy { display: flex; gap: 12px; justify-content: center; padding: 0 10px 8px; background: #fff; }",
    ".parley-privacy button { background: none; border: 0; padding: 2px; font: inherit; font-size: 12px;",
    "  color: #475569; text-decoration: underline; cursor: pointer; }",
    ".parley-input { flex: 1; resize: none; border: 1px solid #cbd5e1; border-radius: 10px; padding: 8px 10px;",
    "  font: inherit; color: inherit; max-height: 120px; min-height: 40px; }",
    ".parley-send { border: 0; border-radius: 10px; padding: 0 16px; background: var(--parley-color);",
    "  color: #fff; font: inherit; font-weight: 600; cursor: pointer; }",
    ".parley-send:disabled, .parley-input:disabled { opacity: .6; cursor: not-allowed; }",
    // Narrow screens: the panel takes the whole viewport so a 360px phone stays usable. The
    // launcher is raised above it (beside Send) so it stays reachable while the panel is open.
    "@media (max-width: 480px) { .parley-root { right: 12px; bottom: 12px; }",
    "  .parley-panel { position: fixed; inset: 0; width: 100%; height: 100%; max-height: none; border-radius: 0; }",
    "  .parley-open .parley-launcher { position: relative; z-index: 1; width: 44px; height: 44px; }",
    "  .parley-open .parley-form { padding-right: 66px; } }",
  ].join("\n");

  // Small DOM helper; text goes in via textContent only, never innerHTML.
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }

  function storageGet(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function storageSet(key, v) { try { localStorage.setItem(key, v); } catch (e) { /* storage blocked: memory only */ } }
  function storageRemove(key) { try { localStorage.removeItem(key); } catch (e) { /* storage blocked */ } }

  // ---- Settings: data- attributes win over the server's config, which wins over defaults ----
  var serverConfig = {};
  var strings = STRINGS.en;

  function nonEmpty(v) { return typeof v === "string" && v.trim() ? v.trim() : null; }
  // Validate colours so neither a page attribute nor the server can inject CSS.
  function validColor(c) { return nonEmpty(c) && window.CSS && CSS.supports("color", c.trim()) ? c.trim() : null; }

  function currentLang() {
    return nonEmpty(data.lang) || nonEmpty(serverConfig.language) || nonEmpty(document.documentElement.lang) || "en";
  }

  function t(key, params) {
    var s = strings[key] != null ? strings[key] : STRINGS.en[key];
    Object.keys(params || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(params[k])); });
    return s;
  }

  function titleText() { return nonEmpty(data.title) || nonEmpty(serverConfig.title) || t("title"); }
  function greetingText() { return nonEmpty(data.greeting) || nonEmpty(serverConfig.greeting) || t("greeting"); }
  function colorValue() { return validColor(data.color) || validColor(serverConfig.color) || DEFAULT_COLOR; }

  // Elements whose text or attribute is a UI string: [node, "text" or attribute name, key].
  var labelled = [];
  function label(node, attr, key) { labelled.push([node, attr, key]); return node; }

  // ---- DOM -------------------------------------------------------------
  var hostEl = el("div", { id: "parley-widget" });
  var shadow = hostEl.attachShadow({ mode: "open" });
  var style = el("style", {}, STYLES);
  var root = el("div", { class: "parley-root" });

  var launcher = label(el("button", {
    type: "button", class: "parley-launcher", part: "launcher",
    "aria-expanded": "false", "aria-controls": "parley-panel",
  }), "aria-label", "open");
  // Static icon markup, no server data involved.
  launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';

  var panel = el("div", {
    id: "parley-panel", class: "parley-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "parley-title",
  });
  panel.hidden = true;
  var header = el("div", { class: "parley-header" });
  var titleEl = el("h2", { id: "parley-title", class: "parley-title" });
  var handoffBtn = label(label(el("button", { type: "button", class: "parley-handoff" }), "text", "handoff"),
    "aria-label", "handoffLabel");
  var closeBtn = label(el("button", { type: "button", class: "parley-close" }, "×"), "aria-label", "close");
  header.append(titleEl, handoffBtn, closeBtn);
  var statusEl = el("div", { class: "parley-status", role: "status" });
  statusEl.hidden = true;
  var log = el("div", { class: "parley-log", role: "log", "aria-live": "polite" });
  var hintEl = el("div", { class: "parley-hint" });
  hintEl.hidden = true;
  var form = el("form", { class: "parley-form" });
  var input = label(label(el("textarea", { class: "parley-input", maxlength: String(MAX_LEN), rows: "1" }),
    "aria-label", "input"), "placeholder", "placeholder");
  var sendBtn = label(label(el("button", { type: "submit", class: "parley-send" }), "text", "send"),
    "aria-label", "sendLabel");
  form.append(input, sendBtn);
  // The visitor's own data (GDPR): a copy of everything stored, or all of it erased.
  var privacy = el("div", { class: "parley-privacy" });
  var downloadBtn = label(el("button", { type: "button", class: "parley-download" }), "text", "download");
  var eraseBtn = label(el("button", { type: "button", class: "parley-erase" }), "text", "erase");
  privacy.append(downloadBtn, eraseBtn);
  panel.append(header, statusEl, log, hintEl, form, privacy);
  root.append(panel, launcher);
  shadow.append(style, root);

  var greetingReply = null;

  // Re-applied when the server's config arrives; data- attributes still win.
  function applySettings() {
    var lang = currentLang();
    strings = STRINGS[lang.toLowerCase().split(/[-_]/)[0]] || STRINGS.en;
    hostEl.setAttribute("lang", lang);
    root.style.setProperty("--parley-color", colorValue());
    titleEl.textContent = titleText();
    labelled.forEach(function (item) {
      if (item[1] === "text") item[0].textContent = t(item[2]);
      else item[0].setAttribute(item[1], t(item[2]));
    });
    if (greetingReply) { greetingReply.raw = greetingText(); renderReply(greetingReply); }
    updateControls();
  }

  // ---- Safe Markdown subset ---------------------------------------------
  // Assistant and agent text is rendered by building nodes, so nothing from the server is ever
  // parsed as HTML. Outside the subset (images, raw tags, non-http(s) links) text stays literal.
  var LINK_RE = /^\[([^\[\]\n]+)\]\(([^()\s]+)\)/;
  // "![" and whatever bracket/paren part follows: kept literal so an image never becomes a link.
  var IMAGE_RE = /^!\[[^\]\n]*\]?(?:\([^)\n]*\)?)?/;
  var CITE_RE = /^\[(\d{1,3})\]/;

  function httpHref(url) {
    if (!/^https?:\/\//i.test(url)) return null;
    try {
      var u = new URL(url);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  // Citation urls come from our own server: http(s) and site-relative paths become hrefs.
  function safeHref(url) {
    if (typeof url !== "string") return null;
    var lower = url.trim().toLowerCase();
    if (!(lower.indexOf("http://") === 0 || lower.indexOf("https://") === 0 || lower.charAt(0) === "/")) return null;
    try {
      var u = new URL(url.trim(), host + "/");
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  function externalLink(href, text, cls) {
    var a = el("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow" }, text);
    if (cls) a.className = cls;
    return a;
  }

  // cites: {"1": {href, title}} or null. depth bounds recursion into **bold** / *italic*.
  function renderInline(text, cites, depth) {
    var frag = document.createDocumentFragment();
    var buf = "";
    var i = 0;
    var m, end, node;
    function flush() { if (buf) { frag.appendChild(document.createTextNode(buf)); buf = ""; } }
    // The text between i + marks and end, rendered inside a <tag>; i moves past the closing marks.
    function emphasis(tag, marks) {
      flush();
      node = el(tag);
      node.appendChild(renderInline(text.slice(i + marks, end), cites, depth + 1));
      frag.appendChild(node);
      i = end + marks;
    }
    while (i < text.length) {
      var ch = text.charAt(i);
      var next = text.charAt(i + 1);
      if (ch === "`") {
        end = text.indexOf("`", i + 1);
        if (end > i + 1) { flush(); frag.appendChild(el("code", {}, text.slice(i + 1, end))); i = end + 1; continue; }
      } else if (ch === "*" && next === "*" && depth < 3) {
        end = text.indexOf("**", i + 2);
        if (end > i + 2) { emphasis("strong", 2); continue; }
      } else if (ch === "*" && next && next !== " " && next !== "*" && depth < 3) {
        end = text.indexOf("*", i + 1);
        if (end > i + 1 && text.charAt(end - 1) !== " ") { emphasis("em", 1); continue; }
      } else if (ch === "!" && next === "[") {
        m = IMAGE_RE.exec(text.slice(i));
        buf += m[0];
        i += m[0].length;
        continue;
      } else if (ch === "[") {
        m = LINK_RE.exec(text.slice(i));
        if (m) {
          var href = httpHref(m[2]);
          if (href) { flush(); frag.appendChild(externalLink(href, m[1])); } else buf += m[0];
          i += m[0].length;
          continue;
        }
        m = CITE_RE.exec(text.slice(i));
        if (m && cites && cites[m[1]]) {
          flush();
          node = externalLink(cites[m[1]].href, m[0], "parley-cite");
          if (cites[m[1]].title) node.title = cites[m[1]].title;
          frag.appendChild(node);
          i += m[0].length;
          continue;
        }
      }
      buf += ch;
      i++;
    }
    flush();
    return frag;
  }

  // Blocks: paragraphs (blank line), line breaks, "- "/"* " and "1. " lists, ``` code, # headings.
  function renderMarkdown(text, cites) {
    var frag = document.createDocumentFragment();
    var lines = String(text == null ? "" : text).replace(/\r\n?/g, "\n").split("\n");
    var para = null, list = null, listType = null, code = null;
    lines.forEach(function (line) {
      var m;
      if (code) {
        if (/^\s*```/.test(line)) code = null;
        else { code.lines.push(line); code.node.textContent = code.lines.join("\n"); }
        return;
      }
      if (/^\s*```/.test(line)) {
        para = list = null;
        var pre = el("pre");
        code = { node: el("code"), lines: [] };
        pre.appendChild(code.node);
        frag.appendChild(pre);
        return;
      }
      if (!line.trim()) { para = list = null; return; }
      var type = "ul";
      m = /^\s*[-*]\s+(.*)$/.exec(line);
      if (!m) { m = /^\s*(\d{1,9})\.\s+(.*)$/.exec(line); type = "ol"; }
      if (m) {
        para = null;
        if (!list || listType !== type) {
          list = el(type);
          listType = type;
          if (type === "ol" && m[1] !== "1") list.setAttribute("start", String(parseInt(m[1], 10)));
          frag.appendChild(list);
        }
        var li = el("li");
        li.appendChild(renderInline(type === "ol" ? m[2] : m[1], cites, 0));
        list.appendChild(li);
        return;
      }
      list = null;
      m = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (m) {
        para = null;
        var heading = el("p");
        var strong = el("strong");
        strong.appendChild(renderInline(m[1], cites, 1));
        heading.appendChild(strong);
        frag.appendChild(heading);
        return;
      }
      if (para) para.appendChild(el("br"));
      else { para = el("p"); frag.appendChild(para); }
      para.appendChild(renderInline(line, cites, 0));
    });
    return frag;
  }

  // ---- Messages --------------------------------------------------------
  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addBubble(kind, text) {
    var bubble = el("div", { class: "parley-msg parley-" + kind }, text);
    log.appendChild(bubble);
    scrollDown();
    return bubble;
  }

  function addError(text) { return addBubble("error", text || t("error")); }
  function addNote(text) { return addBubble("note", text); }

  // A rendered assistant (or agent) message: {bubble, body, extras, raw, cites, typing, id, raf}.
  var current = null; // the bot reply being streamed
  var lastBot = null; // citations may arrive after "done"
  var replies = {}; // message id -> reply, for feedback_saved

  // "Maria Jones" -> "MJ": when the server sent none (an older server), made here.
  function initialsOf(name) {
    var words = String(name || "").split(/[\s._]+/).filter(function (w) { return w; });
    if (!words.length) return "";
    return (words[0].charAt(0) + (words.length > 1 ? words[words.length - 1].charAt(0) : "")).toUpperCase();
  }

  // An agent's avatar (their initials) and display name, above their message.
  function agentHead(agentName, initials) {
    var name = nonEmpty(agentName) || t("agent");
    var head = el("div", { class: "parley-agent-head" });
    head.append(
      el("span", { class: "parley-avatar", "aria-hidden": "true" }, nonEmpty(initials) || initialsOf(name)),
      el("span", { class: "parley-agent-name" }, name)
    );
    return head;
  }

  function createReply(kind, agentName, initials) {
    var bubble = el("div", { class: "parley-msg parley-" + kind });
    if (kind === "agent") bubble.appendChild(agentHead(agentName, initials));
    var body = el("div", { class: "parley-md" });
    var extras = el("div", { class: "parley-extras" });
    bubble.append(body, extras);
    log.appendChild(bubble);
    return { bubble: bubble, body: body, extras: extras, raw: "", cites: null, typing: null, id: null, raf: 0 };
  }

  function renderReply(reply) {
    if (reply.raf) { cancelAnimationFrame(reply.raf); reply.raf = 0; }
    reply.body.textContent = "";
    reply.body.appendChild(renderMarkdown(reply.raw, reply.cites));
  }

  // Streaming: re-render from the accumulated text at most once per frame.
  function scheduleRender(reply) {
    if (reply.raf) return;
    reply.raf = requestAnimationFrame(function () { reply.raf = 0; renderReply(reply); scrollDown(); });
  }

  function startBotReply() {
    var reply = createReply("bot");
    var typing = el("span", { class: "parley-typing", role: "img", "aria-label": t("typing") });
    typing.append(el("span"), el("span"), el("span"));
    reply.bubble.insertBefore(typing, reply.extras);
    reply.typing = typing;
    scrollDown();
    current = reply;
    lastBot = reply;
    return reply;
  }

  function stopTyping(reply) {
    if (reply && reply.typing) { reply.typing.remove(); reply.typing = null; }
  }

  function removeReply(reply) {
    if (reply.raf) cancelAnimationFrame(reply.raf);
    reply.bubble.remove();
    if (lastBot === reply) lastBot = null;
    if (current === reply) current = null;
  }

  function appendToken(text) {
    if (!current) startBotReply();
    stopTyping(current);
    current.raw += String(text);
    scheduleRender(current);
  }

  function setCitations(reply, items) {
    if (!reply || !Array.isArray(items) || !items.length) return;
    var cites = {};
    var box = el("div", { class: "parley-sources" });
    var list = el("ul");
    box.append(el("span", { class: "parley-sources-label" }, t("sources")), list);
    items.forEach(function (item) {
      if (!item || typeof item !== "object") return;
      var text = "[" + item.n + "] " + (item.title || "Untitled");
      var href = safeHref(item.url);
      if (href) cites[String(item.n)] = { href: href, title: item.title ? String(item.title) : "" };
      var link = href ? externalLink(href, text, "parley-source") : el("span", { class: "parley-source" }, text);
      if (item.snippet) link.title = String(item.snippet);
      var li = el("li");
      li.appendChild(link);
      list.appendChild(li);
    });
    if (reply.sources) reply.sources.remove();
    reply.sources = box;
    reply.cites = cites;
    reply.bubble.insertBefore(box, reply.extras);
    renderReply(reply); // [n] markers in the text become links now
    scrollDown();
  }

  // Material Icons "thumb_up" (Apache-2.0); drawn rather than an emoji so it shows without emoji fonts.
  var THUMB_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57' +
    '.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05' +
    'c.09-.23.14-.47.14-.73v-2z"/></svg>';

  function addFeedback(reply) {
    var buttons = [[1, "up", "helpful"], [-1, "down", "notHelpful"]].map(function (spec) {
      var b = el("button", {
        type: "button", class: "parley-feedback parley-feedback-" + spec[1], "aria-label": t(spec[2]), "aria-pressed": "false",
      });
      b.innerHTML = THUMB_ICON; // static markup, no server data involved
      b.addEventListener("click", function () {
        if (!sendFrame({ type: "feedback", message: reply.id, value: spec[0], comment: "" })) return;
        buttons.forEach(function (other) { other.disabled = true; other.setAttribute("aria-pressed", String(other === b)); });
      });
      return b;
    });
    reply.feedback = el("span", { class: "parley-feedback-group" });
    reply.feedback.append(buttons[0], buttons[1]);
    reply.extras.appendChild(reply.feedback);
  }

  // done.handoff: the assistant was not confident; offer a person right under the answer.
  function addHandoffOffer(reply) {
    var b = el("button", { type: "button", class: "parley-offer", "aria-label": t("handoffLabel") }, t("handoff"));
    b.addEventListener("click", function () { if (requestHandoff()) b.disabled = true; });
    reply.extras.appendChild(b);
  }

  function finishReply(reply, messageId, handoff) {
    stopTyping(reply);
    renderReply(reply);
    if (messageId != null && !reply.id) {
      reply.id = String(messageId);
      reply.bubble.setAttribute("data-message-id", reply.id);
      replies[reply.id] = reply;
      addFeedback(reply);
    }
    if (handoff) addHandoffOffer(reply);
    if (current === reply) current = null;
    scrollDown();
  }

  function addAgentMessage(agentName, text, initials) {
    stopAgentTyping();
    var reply = createReply("agent", agentName, initials);
    reply.raw = text == null ? "" : String(text);
    renderReply(reply);
    scrollDown();
    return reply;
  }

  function addGreeting() {
    greetingReply = createReply("bot");
    greetingReply.bubble.classList.add("parley-greeting");
    greetingReply.raw = greetingText();
    renderReply(greetingReply);
  }

  // ---- Conversation state -------------------------------------------------
  var conversationId = storageGet(storageKey) || null;
  var visitorToken = storageGet(visitorKey) || "";
  var handoffState = "bot"; // bot | queued | joined | closed
  var handoffAgent = null;
  var busy = false; // a message is out and its "done" (or error) has not come back
  var inflight = null; // {text, user (bubble), conversation}
  var sendWhenOpen = false; // Enter pressed while (re)connecting: send once the socket is open
  var cooldownUntil = 0;
  var cooldownTimer = null;
  var linePlace = null; // {n, s}: the question waits in line for the assistant ("queued" frame)
  var fatal = false; // the server refuses this page (origin_not_allowed): stop retrying

  function withAgent() { return handoffState === "queued" || handoffState === "joined"; }

  function setConversation(id) {
    conversationId = String(id);
    storageSet(storageKey, conversationId);
  }

  function forgetConversation() {
    conversationId = null;
    storageRemove(storageKey);
    ticketEmail = null;
    handoffState = "bot";
    handoffAgent = null;
  }

  function setHandoff(state, agentName, announce) {
    if (["bot", "queued", "joined", "closed"].indexOf(state) < 0) return;
    handoffState = state;
    handoffAgent = nonEmpty(agentName);
    if (announce) {
      var who = { agent: handoffAgent || t("agent") };
      addNote(t({ queued: "noteQueued", joined: "noteJoined", bot: "noteBot", closed: "noteClosed" }[state], who));
    }
    updateControls();
  }

  function renderHistory(frame) {
    if (frame.conversation) setConversation(frame.conversation);
    var keepUser = inflight && inflight.user;
    var keepReply = current;
    while (log.firstChild) log.removeChild(log.firstChild);
    replies = {};
    lastBot = null;
    addGreeting();
    (Array.isArray(frame.messages) ? frame.messages : []).forEach(function (m) {
      if (!m || typeof m !== "object") return;
      var text = m.text == null ? "" : String(m.text);
      if (m.role === "user") addBubble("user", text);
      else if (m.role === "agent") addAgentMessage(m.agent, text, m.initials);
      else if (m.role === "assistant" || m.role === "bot") {
        var reply = createReply("bot");
        reply.raw = text;
        lastBot = reply;
        setCitations(reply, m.citations);
        finishReply(reply, m.id, false);
      }
    });
    // A message sent right after (re)connecting is answered after this history: keep it last.
    if (keepUser) log.appendChild(keepUser);
    if (keepReply) { log.appendChild(keepReply.bubble); lastBot = keepReply; }
    setHandoff(frame.state || "bot", frame.agent, false);
    ticketEmail = frame.ticket && nonEmpty(frame.ticket.email);
    offerEl = null;
    updateControls();
    scrollDown();
  }

  // ---- An agent typing -------------------------------------------------
  var agentTyping = null; // {bubble, timer}

  function showAgentTyping(frame) {
    if (agentTyping) { clearTimeout(agentTyping.timer); agentTyping.bubble.remove(); }
    var name = nonEmpty(frame.agent) || t("agent");
    var bubble = el("div", { class: "parley-msg parley-agent parley-agent-typing" });
    var dots = el("span", { class: "parley-typing", role: "img", "aria-label": t("agentTyping", { agent: name }) });
    dots.append(el("span"), el("span"), el("span"));
    bubble.append(agentHead(name, frame.initials), dots);
    log.appendChild(bubble);
    scrollDown();
    // Typing frames come while the agent types; without one for a while, they have stopped.
    agentTyping = { bubble: bubble, timer: setTimeout(stopAgentTyping, 6000) };
  }

  function stopAgentTyping() {
    if (!agentTyping) return;
    clearTimeout(agentTyping.timer);
    agentTyping.bubble.remove();
    agentTyping = null;
  }

  // ---- Nobody online: the email form -------------------------------------
  var offerEl = null; // the open offer ({bubble, form, ...}), one at a time
  var ticketEmail = null; // the conversation is a desk ticket answered at this address

  // "Monday at 09:00 (CET)" from the server in English; in other languages the time is written
  // here from back_at, in the site's time zone, by the browser's own date formatting.
  function backText(frame) {
    if (!frame.back_at || frame.open_now !== false) return null;
    var lang = currentLang();
    if (/^en\b/i.test(lang) || !window.Intl) return nonEmpty(frame.back);
    try {
      return new Intl.DateTimeFormat(lang, {
        weekday: "long", hour: "2-digit", minute: "2-digit", timeZone: frame.time_zone || "UTC", timeZoneName: "short",
      }).format(new Date(frame.back_at));
    } catch (e) { return nonEmpty(frame.back); }
  }

  function showOffer(frame) {
    if (frame.conversation != null) setConversation(frame.conversation);
    if (frame.ticket && nonEmpty(frame.ticket.email)) ticketEmail = frame.ticket.email;
    if (offerEl && !offerEl.done) { offerEl.bubble.remove(); log.appendChild(offerEl.bubble); scrollDown(); return; }
    var bubble = el("div", { class: "parley-msg parley-offline", role: "group", "aria-label": t("offlineForm") });
    bubble.appendChild(el("p", {}, t("offlineNobody")));
    var back = backText(frame);
    if (back) bubble.appendChild(el("p", {}, t("offlineBack", { when: back })));
    if (nonEmpty(frame.reply_time)) bubble.appendChild(el("p", {}, t("offlineReply", { time: frame.reply_time.trim() })));
    offerEl = { bubble: bubble, done: false };
    log.appendChild(bubble);
    if (ticketEmail) {
      bubble.appendChild(el("p", { class: "parley-ticket-thanks" }, t("ticketStatus", { email: ticketEmail })));
      offerEl.done = true;
    } else {
      bubble.appendChild(el("p", {}, t("offlineAsk")));
      buildEmailForm(offerEl);
    }
    updateControls();
    scrollDown();
  }

  function field(labelKey, control) {
    var wrap = el("label", {}, t(labelKey));
    wrap.appendChild(control);
    return wrap;
  }

  function buildEmailForm(offer) {
    var form = el("form", { class: "parley-email-form", novalidate: "" });
    var email = el("input", { type: "email", name: "email", autocomplete: "email", required: "", maxlength: "254" });
    var name = el("input", { type: "text", name: "name", autocomplete: "name", maxlength: "200" });
    var error = el("p", { class: "parley-email-error", role: "alert" });
    error.hidden = true;
    var button = el("button", { type: "submit", class: "parley-email-send" }, t("emailSend"));
    form.append(field("emailLabel", email), field("nameLabel", name));
    offer.form = form; offer.email = email; offer.name = name; offer.error = error; offer.button = button;
    offer.question = null;
    form.append(error, button);
    // Asked for a person before writing anything: the question comes with the address.
    if (!log.querySelector(".parley-user")) addQuestionField(offer);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); submitEmail(offer); });
    offer.bubble.appendChild(form);
  }

  function addQuestionField(offer) {
    if (offer.question) return;
    offer.question = el("textarea", { name: "text", rows: "2", maxlength: String(MAX_LEN) });
    offer.form.insertBefore(field("questionLabel", offer.question), offer.error);
  }

  function emailError(offer, text) {
    offer.error.textContent = text || t("error");
    offer.error.hidden = false;
    offer.button.disabled = false;
    offer.button.textContent = t("emailSend");
    offer.pending = false;
  }

  function submitEmail(offer) {
    if (offer.pending || offer.done) return;
    var address = offer.email.value.trim();
    if (!address) { emailError(offer, t("emailMissing")); offer.email.focus(); return; }
    var frame = { type: "email", conversation: conversationId || null, email: address };
    if (offer.name.value.trim()) frame.name = offer.name.value.trim();
    if (offer.question && offer.question.value.trim()) frame.text = offer.question.value.trim().slice(0, MAX_LEN);
    if (!sendFrame(frame)) { emailError(offer, t("emailOffline")); return; }
    offer.pending = true;
    offer.error.hidden = true;
    offer.button.disabled = true;
    offer.button.textContent = t("emailSending");
  }

  function onTicket(frame) {
    if (!nonEmpty(frame.email)) return;
    ticketEmail = frame.email;
    if (offerEl && !offerEl.done) {
      if (offerEl.question && offerEl.question.value.trim()) {
        addBubble("user", offerEl.question.value.trim()); // the question now stands in the chat
        offerEl.bubble.remove();
        log.appendChild(offerEl.bubble);
      }
      offerEl.form.remove();
      offerEl.bubble.appendChild(el("p", { class: "parley-ticket-thanks", role: "status" }, t("emailThanks", { email: frame.email })));
      offerEl.done = true;
    } else {
      addNote(t("emailThanks", { email: frame.email }));
    }
    updateControls();
    scrollDown();
  }

  // An error answering the email frame: shown in the form, whose fields keep what was typed.
  function onEmailError(frame) {
    var offer = offerEl && !offerEl.done ? offerEl : null;
    if (!offer) { addError(frame.message ? String(frame.message) : null); return; }
    if (frame.code === "missing_question") addQuestionField(offer);
    emailError(offer, frame.message ? String(frame.message) : null);
    if (frame.retry_after != null) startCooldown(frame.retry_after);
    (frame.code === "missing_question" ? offer.question : offer.email).focus();
  }

  function startCooldown(seconds) {
    var s = Number(seconds);
    if (!(s > 0)) return;
    cooldownUntil = Math.max(cooldownUntil, Date.now() + Math.min(s, 3600) * 1000);
    if (!cooldownTimer) {
      cooldownTimer = setInterval(function () {
        if (Date.now() >= cooldownUntil) { clearInterval(cooldownTimer); cooldownTimer = null; cooldownUntil = 0; }
        updateControls();
      }, 250);
    }
    updateControls();
  }

  function isOpen() { return !!socket && socket.readyState === WebSocket.OPEN; }

  // One place decides what is enabled and what the status and hint lines say.
  function updateControls() {
    var open = isOpen();
    var wait = Math.ceil((cooldownUntil - Date.now()) / 1000);
    sendBtn.disabled = fatal || !open || busy || wait > 0;
    handoffBtn.disabled = fatal || !open || withAgent();
    if (withAgent()) {
      // A person is already on the way: the inline offers under earlier answers are spent.
      Array.prototype.forEach.call(log.querySelectorAll(".parley-offer"), function (b) { b.disabled = true; });
    }
    var status = [];
    if (started && !fatal && !open) status.push(t(everConnected ? "reconnecting" : "connecting"));
    if (handoffState === "queued") status.push(t("statusQueued"));
    if (handoffState === "joined") status.push(t("statusJoined", { agent: handoffAgent || t("agent") }));
    if (ticketEmail && !withAgent()) status.push(t("ticketStatus", { email: ticketEmail }));
    if (linePlace && busy) status.push(t("statusLine", linePlace));
    var text = status.join(" · ");
    if (statusEl.textContent !== text) statusEl.textContent = text;
    statusEl.hidden = !text;
    var hint = wait > 0 ? t("cooldown", { n: wait }) : sendWhenOpen && !open && !fatal ? t("willSend") : "";
    if (hintEl.textContent !== hint) hintEl.textContent = hint;
    hintEl.hidden = !hint;
  }

  // ---- Connection ------------------------------------------------------
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var everConnected = false;

  function wsUrl() {
    var u = new URL(host + "/");
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = u.pathname.replace(/\/+$/, "") + "/ws/chat/";
    u.search = "?collection=" + encodeURIComponent(collection) + "&site=" + encodeURIComponent(site) +
      "&visitor=" + encodeURIComponent(visitorToken || "");
    return u.href;
  }

  function sendFrame(frame) {
    if (!isOpen()) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    if (socket || retryTimer || fatal) return;
    var ws;
    try { ws = new WebSocket(wsUrl()); } catch (e) { scheduleReconnect(); return; }
    socket = ws;
    ws.addEventListener("open", function () {
      if (ws !== socket) return;
      everConnected = true;
      if (conversationId) sendFrame({ type: "resume", conversation: conversationId });
      updateControls();
      if (sendWhenOpen) { sendWhenOpen = false; send(); }
    });
    ws.addEventListener("message", function (ev) {
      if (ws !== socket) return;
      attempt = 0; // the server is talking to us: the next drop starts the backoff afresh
      handleFrame(ev.data);
    });
    ws.addEventListener("close", function () {
      if (ws !== socket) return;
      socket = null;
      // A reply cut off mid-stream stays as far as it got; the resume's history replaces it.
      if (current) {
        if (current.raw) { finishReply(current, null, false); addNote(t("interrupted")); } else removeReply(current);
      }
      current = null;
      inflight = null;
      busy = false;
      updateControls();
      scheduleReconnect();
    });
    // "error" is always followed by "close", which does the work.
    updateControls();
  }

  // Exponential backoff with jitter (0.5 s doubling to 30 s), so a restarted server is not
  // hammered by every open page at the same instant.
  function scheduleReconnect() {
    if (retryTimer || fatal) return;
    var base = Math.min(30000, 500 * Math.pow(2, attempt));
    attempt++;
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, base / 2 + Math.random() * base / 2);
  }

  window.addEventListener("online", function () {
    if (!started || socket || !retryTimer) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    connect();
  });

  function handleError(frame) {
    if (frame.for === "email") { onEmailError(frame); return; }
    if (frame.code === "unknown_conversation") {
      // The stored conversation is gone (erased, or a reinstalled server): start afresh silently,
      // sending the question again if it was addressed to the old conversation.
      forgetConversation();
      if (inflight && inflight.conversation) {
        inflight.conversation = null;
        sendFrame({ type: "message", text: inflight.text, conversation: null });
      }
      updateControls();
      return;
    }
    if (frame.code === "origin_not_allowed") {
      fatal = true;
      if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    }
    if (inflight) {
      if (current && current.raw) finishReply(current, null, false);
      else {
        // Refused before any answer: put the text back so the visitor can send it again.
        if (current) removeReply(current);
        if (inflight.user) inflight.user.remove();
        if (!input.value.trim()) input.value = inflight.text;
      }
      current = null;
      inflight = null;
      busy = false;
    }
    addError(frame.message ? String(frame.message) : null);
    if (frame.retry_after != null) startCooldown(frame.retry_after);
    updateControls();
  }

  // A "queued" frame: the server is answering others from the same network first. Numbers only,
  // shown through textContent like every status line.
  function setLinePlace(frame) {
    var n = Math.floor(Number(frame.position));
    var s = Math.ceil(Number(frame.wait_seconds));
    linePlace = isFinite(n) && n >= 1 ? { n: n, s: isFinite(s) && s >= 0 ? s : "?" } : null;
    updateControls();
  }

  function handleFrame(raw) {
    var frame;
    try { frame = JSON.parse(raw); } catch (e) { return; } // not ours: ignore rather than crash
    if (!frame || typeof frame !== "object") return;
    if (linePlace && /^(conversation|token|done|error)$/.test(String(frame.type))) { // out of line
      linePlace = null;
      updateControls();
    }
    switch (frame.type) {
      case "visitor":
        if (nonEmpty(frame.token)) { visitorToken = frame.token; storageSet(visitorKey, visitorToken); }
        break;
      case "config":
        serverConfig = frame;
        applySettings();
        break;
      case "conversation":
        if (frame.id != null) setConversation(frame.id);
        break;
      case "history":
        renderHistory(frame);
        break;
      case "token":
        if (frame.text != null) appendToken(frame.text);
        break;
      case "citations":
        setCitations(current || lastBot, frame.items);
        break;
      case "done":
        if (current) {
          // relayed: the message went to a person, so no bot answer follows.
          if (frame.relayed && !current.raw) removeReply(current);
          else finishReply(current, frame.relayed ? null : frame.message, !!frame.handoff);
        }
        current = null;
        inflight = null;
        busy = false;
        updateControls();
        break;
      case "queued":
        setLinePlace(frame);
        break;
      case "handoff":
        setHandoff(frame.state, frame.agent, true);
        break;
      case "agent_message":
        addAgentMessage(frame.agent, frame.text, frame.initials);
        break;
      case "agent_typing":
        showAgentTyping(frame);
        break;
      case "offline":
        showOffer(frame);
        break;
      case "ticket":
        onTicket(frame);
        break;
      case "feedback_saved":
        var reply = frame.message != null && replies[String(frame.message)];
        if (reply && reply.feedback) {
          reply.feedback.textContent = "";
          reply.feedback.appendChild(el("span", { class: "parley-thanks" }, t("thanks")));
        }
        break;
      case "error":
        handleError(frame);
        break;
      case "export":
        saveExport(frame.data);
        break;
      case "erased":
        conversationId = null;
        storageRemove(storageKey);
        ticketEmail = null;
        offerEl = null;
        stopAgentTyping();
        while (log.firstChild) log.removeChild(log.firstChild);
        replies = {};
        lastBot = null;
        addGreeting();
        addNote(t("erased"));
        break;
    }
  }

  function saveExport(data) {
    // A file the visitor keeps: made in the page from the frame, nothing fetched from anywhere.
    var blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    var link = el("a", { href: URL.createObjectURL(blob), download: "my-conversations.json" });
    link.hidden = true;
    root.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  function requestHandoff() { return sendFrame({ type: "handoff" }); }

  // The text leaves the input only once it has actually gone out on an open socket.
  function send() {
    var text = input.value.trim();
    if (!text || fatal || busy || cooldownUntil > Date.now()) return;
    if (!isOpen()) {
      sendWhenOpen = true;
      connect();
      updateControls();
      return;
    }
    sendWhenOpen = false;
    text = text.slice(0, MAX_LEN);
    sendFrame({ type: "message", text: text, conversation: conversationId || null });
    input.value = "";
    var user = addBubble("user", text);
    // With a person queued or present, no bot answer is coming: no typing indicator.
    if (!withAgent()) startBotReply();
    inflight = { text: text, user: user, conversation: conversationId || null };
    busy = true;
    updateControls();
  }

  // ---- Open / close ----------------------------------------------------
  var started = false;

  function open() {
    panel.hidden = false;
    root.classList.add("parley-open");
    launcher.setAttribute("aria-expanded", "true"); // label stays "Open chat"; aria-expanded carries the state
    if (!started) { started = true; addGreeting(); connect(); } // connect lazily: no socket per page view
    updateControls();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    root.classList.remove("parley-open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () { if (panel.hidden) open(); else close(); });
  closeBtn.addEventListener("click", close);
  handoffBtn.addEventListener("click", requestHandoff);
  downloadBtn.addEventListener("click", function () { sendFrame({ type: "export" }); });
  eraseBtn.addEventListener("click", function () {
    if (window.confirm(t("eraseConfirm"))) sendFrame({ type: "erase" });
  });
  root.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && !panel.hidden) { ev.preventDefault(); close(); }
  });
  form.addEventListener("submit", function (ev) { ev.preventDefault(); send(); });
  input.addEventListener("keydown", function (ev) {
    // Enter sends, Shift+Enter is a newline; leave IME composition alone.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
  });

  applySettings();

  // An async script can run before <body> exists.
  function mount() { document.body.appendChild(hostEl); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
