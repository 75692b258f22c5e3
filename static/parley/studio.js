/*
 * The studio's item page: follow the article's generation while it is queued or running, by
 * polling the JSON API (GET /api/content/items/<id>, the staff session; a GET needs no CSRF
 * token) every 2 s, and reload the page when it is done or failed. Without JavaScript the page
 * says to reload it. Text from the API goes in with textContent, never as HTML.
 */
/* The element `id` when its data-status says its job is queued or running, else null. */
function inFlight(id) {
  "use strict";
  var box = document.getElementById(id);
  var status = box && box.getAttribute("data-status");
  return status === "queued" || status === "running" ? box : null;
}

/*
 * Follow an API resource: GET `url` (JSON, the staff session) every 2 s while `seen(item)`
 * returns true; while the server does not answer (restarting), back off up to 30 s and keep trying.
 */
function follow(url, seen) {
  "use strict";
  var delay = 2000;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (item) {
        delay = 2000;
        if (seen(item)) window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        window.setTimeout(poll, delay);
      });
  }
  window.setTimeout(poll, delay);
}

(function () {
  "use strict";
  var box = inFlight("generation");
  if (!box) return;
  var url = box.getAttribute("data-api");
  var bar = box.querySelector("progress");
  var step = box.querySelector("[data-step]");
  follow(url, function (item) {
    var g = item.generation;
    if (g.status === "done" || g.status === "failed") {
      window.location.reload();
      return false;
    }
    if (bar) bar.value = g.progress;
    if (step) step.textContent = g.step || g.status;
    return true;
  });
})();

/*
 * The model stopped writing: the review steps that waited for the text (disabled, with the
 * "Still writing" reason) can be taken again. The server checks it anew on every move.
 */
function textFinished() {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("button[data-waits-for-text]"), function (button) {
    button.disabled = false;
    button.removeAttribute("aria-describedby");
    button.removeAttribute("data-waits-for-text");
  });
  var reason = document.getElementById("still-writing");
  if (reason) reason.remove();
}

/*
 * Regenerating one part: while the latest regeneration is queued or running, poll the same API
 * and say how far it is; when it is done or failed, reload the page to show the new revision
 * (or why not), unless the editor has typed into the edit form meanwhile: then say so and
 * leave the reload to them, so nothing they typed is lost.
 */
(function () {
  "use strict";
  var box = inFlight("regeneration");
  if (!box) return;
  var url = box.getAttribute("data-api");
  var id = Number(box.getAttribute("data-id"));
  var text = box.querySelector("[data-regeneration-text]");
  var form = document.getElementById("edit-form");
  var typed = false;
  if (form) form.addEventListener("input", function () { typed = true; });

  function outcome(r) {
    if (r.status === "failed") return "Could not regenerate " + r.label + ": " + (r.error || "no reason was recorded") + ".";
    return "Regenerated " + r.label + (r.revision ? " as revision " + r.revision : " (the same text again: nothing changed)") +
      ". Reload the page to see it; save your own changes first, or copy them.";
  }

  follow(url, function (item) {
    var r = item.regeneration;
    var finished = !r || r.id !== id || r.status === "done" || r.status === "failed";
    if (finished && !typed) {
      window.location.reload();
      return false;
    }
    if (finished) {
      textFinished();
      box.setAttribute("data-status", r && r.id === id ? r.status : "done");
      var bar = box.querySelector("progress");
      if (bar) bar.remove();
      if (text && r && r.id === id) text.textContent = outcome(r);
      return false;
    }
    if (text) text.textContent = "Regenerating " + r.label + ": " +
      (r.status === "queued" ? "waiting for the model." : "the model is writing it.");
    return true;
  });
})();

/*
 * Image candidates: while any is queued or running, poll the same API and show each one's
 * progress and latest step preview in place (the edit form is never reloaded under the editor);
 * a finished one shows its picture.
 */
(function () {
  "use strict";
  var box = document.getElementById("generation");
  var figures = document.querySelectorAll("figure[data-image-id]");
  if (!box || !figures.length) return;
  var url = box.getAttribute("data-api");

  function busy() {
    return Array.prototype.some.call(figures, function (f) {
      var s = f.getAttribute("data-status");
      return s === "queued" || s === "running";
    });
  }

  function show(figure, image) {
    figure.setAttribute("data-status", image.status);
    var progress = figure.querySelector("[data-progress]");
    if (progress) progress.textContent = String(image.progress);
    var label = figure.querySelector("[data-image-status]");
    if (label) label.textContent = image.status;
    var src = image.url || image.preview_url;
    if (!src) return;
    var img = figure.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.alt = image.alt || "";
      figure.insertBefore(img, figure.firstChild);
      var placeholder = figure.querySelector(".placeholder");
      if (placeholder && image.url) placeholder.remove();
    }
    img.src = src + (image.url ? "" : "?step=" + image.progress);
  }

  function poll() {
    if (!busy()) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (item) {
        item.images.forEach(function (image) {
          var figure = document.querySelector('figure[data-image-id="' + image.id + '"]');
          if (figure) show(figure, image);
        });
        window.setTimeout(poll, 2000);
      })
      .catch(function () {
        window.setTimeout(poll, 10000);
      });
  }

  window.setTimeout(poll, 2000);
})();

/*
 * The search-result preview beside the meta fields (templates/studio/_snippet.html): redrawn as
 * the editor types the title, meta title, meta description or slug, cut where a search engine
 * cuts (content/snippet.py has the same rules; the title is also measured in pixels at 20px
 * Arial, as Google lays it out). Text goes in with textContent only.
 */
(function () {
  "use strict";
  var box = document.getElementById("snippet");
  if (!box) return;
  var fields = {
    title: document.getElementById("f-title"),
    metaTitle: document.getElementById("f-meta-title"),
    description: document.getElementById("f-meta-description"),
    slug: document.getElementById("f-slug")
  };
  var siteUrl = box.getAttribute("data-site-url") || "";
  var titleChars = Number(box.getAttribute("data-title-chars")) || 60;
  var titlePx = Number(box.getAttribute("data-title-px")) || 580;
  var descriptionChars = Number(box.getAttribute("data-description-chars")) || 158;
  var ELLIPSIS = "\u2026";
  var TRAILING = /[\s,;:.\-\u2013\u2014|\u00b7\/]+$/;
  var canvas = document.createElement("canvas");
  var context = canvas.getContext ? canvas.getContext("2d") : null;
  if (context) context.font = "20px Arial, sans-serif";

  function oneLine(text) {
    return (text || "").split(/\s+/).filter(Boolean).join(" ");
  }

  function width(text) {
    return context ? context.measureText(text).width : 0;
  }

  /* Cut `text` before it passes `fits` (a test of a candidate with its "…"), after a whole word. */
  function cut(text, fits) {
    var end = text.length;
    while (end > 0 && !fits(text.slice(0, end - 1) + ELLIPSIS)) end -= 1;
    var kept = text.slice(0, Math.max(end - 1, 0));
    if (text.charAt(kept.length) !== " " && kept.indexOf(" ") !== -1) kept = kept.slice(0, kept.lastIndexOf(" "));
    return kept.replace(TRAILING, "") + ELLIPSIS;
  }

  function titleFits(text) {
    return text.length <= titleChars && (!context || width(text) <= titlePx);
  }

  function address(slug) {
    var match = /^(https?:\/\/[^\/?#]+)([^?#]*)/.exec(siteUrl) || ["", siteUrl, ""];
    var crumbs = match[2].split("/").filter(Boolean);
    if (slug) crumbs.push(slug);
    return [match[1]].concat(crumbs).join(" \u203a ");
  }

  function slugOf(text) {
    return oneLine(text).toLowerCase().replace(/[^\p{L}\p{N}\s-]+/gu, "").replace(/[\s-]+/g, "-").replace(/^-|-$/g, "");
  }

  function count(badge, label, chars, limit, wasCut, extra) {
    if (!badge) return;
    badge.textContent = label + ": " + chars + " of about " + limit + " characters" + (extra || "") + (wasCut ? ", cut" : "");
    badge.classList.remove("badge-ok", "badge-warn", "badge-bad");
    badge.classList.add(!chars ? "badge-bad" : wasCut ? "badge-warn" : "badge-ok");
  }

  function draw() {
    var title = oneLine(fields.metaTitle && fields.metaTitle.value) || oneLine(fields.title && fields.title.value);
    var description = oneLine(fields.description && fields.description.value);
    var titleCut = !titleFits(title);
    var descriptionCut = description.length > descriptionChars;
    var shownTitle = titleCut ? cut(title, titleFits) : title;
    var shownDescription = descriptionCut ? cut(description, function (t) { return t.length <= descriptionChars; }) : description;
    box.querySelector("[data-snippet-title]").textContent = shownTitle || "(no title)";
    box.querySelector("[data-snippet-description]").textContent = shownDescription ||
      "(no meta description: the search engine picks some text from the page)";
    box.querySelector("[data-snippet-url]").textContent = address(slugOf(fields.slug ? fields.slug.value : ""));
    var px = context ? ", " + Math.round(width(title)) + " of " + titlePx + " px" : "";
    count(box.querySelector("[data-snippet-title-count]"), "Title", title.length, titleChars, titleCut, px);
    count(box.querySelector("[data-snippet-description-count]"), "Description", description.length, descriptionChars, descriptionCut);
  }

  Object.keys(fields).forEach(function (name) {
    if (fields[name]) fields[name].addEventListener("input", draw);
  });
  draw();
})();
