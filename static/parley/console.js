/*
 * The agents' console: the live queue and one open conversation, over /ws/console/.
 * Every text from visitors, the model or agents goes in with textContent, never as HTML.
 */
(function () {
  "use strict";
  var queue = {}, me = null, current = null, socket = null, backoff = 500;
  // The copilot: the suggestion on screen, and the one inserted in the reply box (its id goes
  // with the reply, so Parley can count suggestions sent unedited).
  var suggestion = null, inserted = null;
  var $ = function (id) { return document.getElementById(id); };

  function send(frame) { if (socket && socket.readyState === 1) socket.send(JSON.stringify(frame)); }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/console/");
    socket.onopen = function () {
      backoff = 500;
      // While this page is connected, visitors who ask for a person are queued for you; with
      // no console open anywhere they are offered an answer by email instead.
      $("connection").textContent = "Online: visitors can reach you";
      if (current) send({ type: "open", conversation: current });
      send({ type: "macros" });
    };
    socket.onclose = function () {
      $("connection").textContent = "Reconnecting… (visitors see nobody online)";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
    socket.onmessage = function (event) { handle(JSON.parse(event.data)); };
  }

  function handle(frame) {
    if (frame.type === "queue") {
      me = frame.me; queue = {};
      frame.conversations.forEach(function (c) { queue[c.id] = c; });
      renderQueue();
    } else if (frame.type === "changed") {
      var c = frame.conversation;
      if (c.status === "queued" || c.status === "agent") queue[c.id] = c; else delete queue[c.id];
      renderQueue();
      if (c.id === current) { queue[c.id] = queue[c.id] || c; renderButtons(c); note(stateText(c)); }
    } else if (frame.type === "history") {
      if (frame.conversation.id !== current) return;
      $("log").textContent = "";
      if (frame.summary) renderSummary(frame.summary);
      frame.messages.forEach(function (m) { add(m.role, m.text, m.agent, m.citations, m.id); });
      renderButtons(frame.conversation);
    } else if (frame.type === "visitor_message" && frame.conversation === current) {
      add("user", frame.text);
    } else if (frame.type === "agent_typing") {
      // The visitor sees it; the console has nothing to show.
    } else if (frame.type === "agent_message") {
      add("agent", frame.text, frame.agent);
    } else if (frame.type === "suggestion" && frame.conversation === current) {
      showSuggestion(frame);
    } else if (frame.type === "macros") {
      renderMacros(frame.items);
    } else if (frame.type === "macro" && frame.conversation === current) {
      insertMacro(frame);
    } else if (frame.type === "error") {
      $("error").textContent = frame.message;
      $("suggest").disabled = !current;
    }
  }

  // What the visitor asked the assistant before the handover, built from the stored messages.
  function renderSummary(summary) {
    var box = document.createElement("div");
    box.className = "handover";
    box.setAttribute("role", "note");
    var title = document.createElement("strong");
    title.textContent = "Before the handover: " + summary.headline;
    box.appendChild(title);
    var list = document.createElement("ol");
    summary.questions.forEach(function (q) {
      var item = document.createElement("li");
      var asked = document.createElement("div");
      asked.textContent = "“" + q.question + "”";
      var answered = document.createElement("div");
      answered.className = "muted";
      answered.textContent = "Assistant: " + q.answer;
      item.appendChild(asked); item.appendChild(answered);
      var flags = [];
      if (q.failed) flags.push(["could not answer", "badge-bad"]);
      else if (!q.sure) flags.push(["not sure", "badge-warn"]);
      else if (q.verified) flags.push(["verified", "badge-ok"]);
      if (q.thumbs_down) flags.push(["thumbs-down", "badge-bad"]);
      flags.forEach(function (flag) {
        var badge = document.createElement("span");
        badge.className = "badge " + flag[1]; badge.textContent = flag[0];
        answered.appendChild(document.createTextNode(" ")); answered.appendChild(badge);
      });
      list.appendChild(item);
    });
    box.appendChild(list);
    $("log").appendChild(box);
  }

  function showSuggestion(frame) {
    $("suggest").disabled = false;
    $("suggestion").hidden = false;
    $("suggestion-label").textContent = frame.label || "";
    $("suggestion-text").textContent = frame.text || "";
    $("suggestion-note").textContent = frame.note || "";
    $("suggestion-note").hidden = !frame.note;
    suggestion = frame.text ? { id: frame.id, text: frame.text } : null;
    $("insert").hidden = !suggestion;
    $("insert").disabled = $("reply").disabled;
  }

  function hideSuggestion() {
    suggestion = null; inserted = null;
    $("suggestion").hidden = true;
  }

  function renderMacros(items) {
    var picker = $("macro");
    while (picker.options.length > 1) picker.remove(1);
    items.forEach(function (m) {
      var option = document.createElement("option");
      option.value = m.id; option.textContent = m.title;
      picker.appendChild(option);
    });
    picker.hidden = !items.length;
  }

  // A canned reply goes where the cursor is in the reply box (at the end if it has not been there).
  var placed = false;
  function insertMacro(frame) {
    var box = $("reply"), start = box.selectionStart, end = box.selectionEnd;
    if (placed && typeof start === "number") box.value = box.value.slice(0, start) + frame.text + box.value.slice(end);
    else box.value = box.value ? box.value.replace(/\s*$/, "") + " " + frame.text : frame.text;
    $("macro-warning").textContent = frame.warning || "";
    $("macro-warning").hidden = !frame.warning;
    box.focus();
  }

  function stateText(c) {
    if (c.status === "queued") return "Waiting for an agent";
    if (c.status === "agent") return (c.agent || "An agent") + " has this conversation";
    if (c.status === "bot" && c.ticket) return "The visitor left their email address: now ticket " + c.ticket + " in the email desk";
    if (c.status === "bot") return "Handed back to the assistant";
    return "Closed";
  }

  function renderQueue() {
    var list = $("queue");
    list.textContent = "";
    Object.keys(queue).sort(function (a, b) {
      return (queue[a].waiting_since || "").localeCompare(queue[b].waiting_since || "");
    }).forEach(function (id) {
      var c = queue[id], item = document.createElement("button");
      item.className = "queue-item"; item.type = "button"; item.setAttribute("role", "listitem");
      item.setAttribute("aria-current", id === current ? "true" : "false");
      item.dataset.id = id;
      var badge = document.createElement("span");
      badge.className = "badge" + (c.status === "agent" ? " agent" : "");
      badge.textContent = c.status === "agent" ? (c.agent || "taken") : "waiting";
      var line = document.createElement("div");
      line.textContent = c.last || "(no message yet)";
      item.appendChild(badge); item.appendChild(document.createTextNode(" " + (c.site || c.collection)));
      item.appendChild(line);
      item.addEventListener("click", function () { open(id); });
      list.appendChild(item);
    });
    if (!list.childNodes.length) list.textContent = "Nobody is waiting.";
  }

  function open(id) {
    if (id !== current) { hideSuggestion(); $("macro-warning").hidden = true; }
    current = id; $("error").textContent = "";
    $("chat-title").textContent = "Conversation " + id.slice(0, 8);
    renderQueue();
    send({ type: "open", conversation: id });
  }

  function renderButtons(c) {
    var mine = c.status === "agent" && c.agent_id === me;
    $("claim").disabled = c.status !== "queued";
    $("hand-back").disabled = !mine && c.status !== "queued";
    $("close").disabled = c.status === "closed" || (c.status === "agent" && !mine);
    $("reply").disabled = $("send").disabled = !mine;
    // A suggestion for a conversation waiting for a person, or one you have; inserting and
    // canned replies need it to be yours.
    $("suggest").disabled = !(mine || c.status === "queued");
    $("insert").disabled = $("macro").disabled = !mine;
  }

  function add(role, text, agent, citations, id) {
    var bubble = document.createElement("div");
    bubble.className = "msg " + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "Visitor" : role === "agent" ? (agent || "Agent") : "Assistant";
    bubble.appendChild(who);
    bubble.appendChild(document.createTextNode(text));
    if (citations && citations.length) {
      var sources = document.createElement("div");
      sources.className = "sources";
      sources.textContent = "Sources: " + citations.map(function (s) { return "[" + s.n + "] " + s.title; }).join("; ");
      bubble.appendChild(sources);
    }
    if (role === "assistant" && id) bubble.appendChild(correction(id, text));
    $("log").appendChild(bubble);
    $("log").scrollTop = $("log").scrollHeight;
  }

  // An agent rewrites a wrong answer; the correction is kept as a training example
  // (POST /api/messages/{id}/correct). The visitor is not sent anything.
  function correction(id, text) {
    var box = document.createElement("div");
    box.className = "correct";
    var edit = document.createElement("button");
    edit.type = "button"; edit.className = "correct-open"; edit.textContent = "Correct this answer";
    var form = document.createElement("form");
    form.hidden = true;
    var area = document.createElement("textarea");
    area.value = text; area.rows = 3; area.setAttribute("aria-label", "Corrected answer");
    var save = document.createElement("button");
    save.type = "submit"; save.textContent = "Save for training";
    var status = document.createElement("span");
    status.className = "correct-status"; status.setAttribute("role", "status");
    form.appendChild(area); form.appendChild(save);
    box.appendChild(edit); box.appendChild(form); box.appendChild(status);
    edit.addEventListener("click", function () { form.hidden = false; edit.hidden = true; area.focus(); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var token = document.querySelector("input[name=csrfmiddlewaretoken]");
      fetch("/api/messages/" + encodeURIComponent(id) + "/correct", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.value : "" },
        body: JSON.stringify({ answer: area.value })
      }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error((body.error && body.error.message) || "Not saved.");
          form.hidden = true; status.textContent = "Saved for training.";
        });
      }).catch(function (error) { status.textContent = error.message; });
    });
    return box;
  }

  function note(text) {
    var p = document.createElement("p");
    p.className = "status"; p.textContent = text;
    $("log").appendChild(p);
  }

  $("claim").addEventListener("click", function () { $("error").textContent = ""; send({ type: "claim", conversation: current }); });
  $("hand-back").addEventListener("click", function () { send({ type: "hand_back", conversation: current }); });
  $("close").addEventListener("click", function () { send({ type: "close", conversation: current }); });
  $("reply-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("reply").value.trim();
    if (!text || !current) return;
    var frame = { type: "reply", conversation: current, text: text };
    if (inserted) frame.suggestion = inserted.id;
    send(frame);
    $("reply").value = "";
    inserted = null; placed = false;
    $("macro-warning").hidden = true;
    lastTyping = 0;
  });
  $("suggest").addEventListener("click", function () {
    if (!current) return;
    $("error").textContent = "";
    this.disabled = true;
    send({ type: "suggest", conversation: current });
  });
  $("insert").addEventListener("click", function () {
    if (!suggestion || $("reply").disabled) return;
    $("reply").value = suggestion.text;
    inserted = suggestion;
    $("reply").focus();
  });
  $("dismiss").addEventListener("click", hideSuggestion);
  $("macro").addEventListener("change", function () {
    var id = this.value;
    this.selectedIndex = 0;
    if (id && current) send({ type: "macro", conversation: current, macro: Number(id) });
  });
  ["click", "keyup", "select"].forEach(function (name) {
    $("reply").addEventListener(name, function () { placed = true; });
  });
  // The visitor sees "<your name> is typing": at most one frame every 3 seconds while typing.
  var lastTyping = 0;
  $("reply").addEventListener("input", function () {
    var now = Date.now();
    if (!current || $("reply").disabled || !$("reply").value.trim() || now - lastTyping < 3000) return;
    lastTyping = now;
    send({ type: "typing", conversation: current });
  });
  $("reply").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("reply-form").requestSubmit(); }
  });
  connect();
})();
