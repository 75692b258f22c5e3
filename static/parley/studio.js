/*
 * The studio's item page: follow the article's generation while it is queued or running, by
 * polling the JSON API (GET /api/content/items/<id>, the staff session; a GET needs no CSRF
 * token) every 2 s, and reload the page when it is done or failed. Without JavaScript the page
 * says to reload it. Text from the API goes in with textContent, never as HTML.
 */
(function () {
  "use strict";
  var box = document.getElementById("generation");
  if (!box) return;
  var status = box.getAttribute("data-status");
  if (status !== "queued" && status !== "running") return;
  var url = box.getAttribute("data-api");
  var bar = box.querySelector("progress");
  var step = box.querySelector("[data-step]");
  var delay = 2000;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (item) {
        var g = item.generation;
        if (g.status === "done" || g.status === "failed") {
          window.location.reload();
          return;
        }
        if (bar) bar.value = g.progress;
        if (step) step.textContent = g.step || g.status;
        delay = 2000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);  // the server restarting: back off, keep trying
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
