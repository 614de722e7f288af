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
  // Code batches: the button says it is working while the batch is generated.
  document.querySelectorAll("form[data-progress]").forEach(function (f) {
    f.addEventListener("submit", function () {
      var b = f.querySelector("button[type=submit]");
      if (b) { b.disabled = true; b.insertAdjacentHTML("afterend", ' <progress aria-label="generating"></progress>'); }
    });
  });
})();
