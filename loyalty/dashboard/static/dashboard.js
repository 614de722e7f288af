// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  // Segment builder: count and sample while editing (the form posts to the preview URL).
  var form = document.getElementById("segment-form");
  if (form) {
    var target = document.getElementById("preview");
    var timer = null;
    var refresh = function () {
      var body = new FormData(form);
      fetch(form.dataset.preview, { method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": body.get("csrf_token") } })
        .then(function (r) { return r.text(); })
        .then(function (html) { target.innerHTML = html; })
        .catch(function () {});
    };
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 400); });
    form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(refresh, 200); });
    var button = document.getElementById("refresh-preview");
    if (button) { button.addEventListener("click", refresh); }
    var add = document.getElementById("add-condition");
    if (add) {
      add.addEventListener("click", function () {
        var rows = form.querySelectorAll("fieldset.condition");
        if (rows.length >= 8) { return; }
        var n = rows.length, copy = rows[rows.length - 1].cloneNode(true), last = n - 1;
        copy.querySelector("legend").textContent = copy.querySelector("legend").textContent.replace(String(n), String(n + 1));
        copy.querySelectorAll("[id],[for],[name]").forEach(function (el) {
          ["id", "for", "name"].forEach(function (a) {
            var v = el.getAttribute(a);
            if (v) { el.setAttribute(a, v.replace("_" + last, "_" + n)); }
          });
          if (el.tagName === "INPUT" && el.type !== "checkbox") { el.value = ""; }
          if (el.type === "checkbox") { el.checked = false; }
        });
        rows[rows.length - 1].after(copy);
        copy.querySelector("select").focus();
      });
    }
  }
  // Code batches: a submit can't be sent twice; running batches' progress is polled (every
  // 2 s) and the page reloads once they are all finished (its CSV links appear).
  document.querySelectorAll("form[data-progress]").forEach(function (f) {
    f.addEventListener("submit", function () {
      var b = f.querySelector("button[type=submit]");
      if (b) { b.disabled = true; }
    });
  });
  var status = document.getElementById("batch-progress");
  if (status) {
    var poll = function () {
      fetch(status.dataset.progressUrl, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (batches) {
          var running = 0;
          Object.keys(batches).forEach(function (id) {
            var b = batches[id], bar = document.querySelector('progress[data-batch="' + id + '"]');
            if (bar) { bar.value = b.generated; }
            var count = document.getElementById("batch-" + id + "-count");
            if (count) { count.textContent = b.generated + "/" + b.requested; }
            if (b.status === "running") { running += 1; }
          });
          if (running) { setTimeout(poll, 2000); } else { window.location.reload(); }
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1000);
  }
})();
