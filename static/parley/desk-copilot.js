/*
 * The copilot on a desk ticket's page (templates/console/desk_ticket.html): a suggested reply from
 * the knowledge base (POST /console/desk/<id>/suggest) and canned replies, each inserted into the
 * reply box for the agent to edit. Nothing is sent until the agent approves. Every text goes in
 * with textContent or as a textarea's value, never as HTML.
 */
(function () {
  "use strict";
  var box = document.getElementById("copilot");
  if (!box) return;
  var $ = function (id) { return document.getElementById(id); };
  var body = $("body"), kept = $("suggestion-id"), suggestion = null;

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function show(data) {
    $("suggestion").hidden = false;
    $("suggestion-label").textContent = data.label || "";
    $("suggestion-text").textContent = data.text || "";
    $("suggestion-note").textContent = data.note || "";
    $("suggestion-note").hidden = !data.note;
    $("insert-suggestion").hidden = !data.letter;
    suggestion = data.letter ? { id: data.id, text: data.letter } : null;
  }

  $("suggest").addEventListener("click", function () {
    var button = this;
    button.disabled = true;
    $("copilot-status").textContent = "Looking in the knowledge base…";
    fetch(box.dataset.suggestUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" }
    }).then(function (response) {
      var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (!json) throw new Error("No suggestion could be made (" + response.status + "); reload the page and try again.");
      return response.json().then(function (data) {
        if (!response.ok) throw new Error((data.error && data.error.message) || "No suggestion could be made.");
        $("copilot-status").textContent = "";
        show(data);
      });
    }).catch(function (error) {
      $("copilot-status").textContent = error.message;
    }).then(function () { button.disabled = false; });
  });

  $("insert-suggestion").addEventListener("click", function () {
    if (!suggestion || !body) return;
    body.value = suggestion.text;
    if (kept) kept.value = suggestion.id || "";
    body.focus();
    $("copilot-status").textContent = "Inserted: edit it, then approve and send.";
  });

  // Where the agent last put the cursor in the reply; until then a canned reply goes at the end.
  var placed = false;
  if (body) ["click", "keyup", "select"].forEach(function (name) {
    body.addEventListener(name, function () { placed = true; });
  });

  var picker = $("macro");
  if (picker) picker.addEventListener("change", function () {
    var option = picker.options[picker.selectedIndex];
    if (!option || !option.value || !body) return;
    var text = option.dataset.text || "";
    var start = body.selectionStart, end = body.selectionEnd;
    if (placed && typeof start === "number") {
      body.value = body.value.slice(0, start) + text + body.value.slice(end);
    } else {
      body.value = body.value ? body.value.replace(/\s*$/, "") + "\n\n" + text : text;
    }
    $("macro-warning").textContent = option.dataset.warning || "";
    $("macro-warning").hidden = !option.dataset.warning;
    picker.selectedIndex = 0;
    body.focus();
  });
})();
