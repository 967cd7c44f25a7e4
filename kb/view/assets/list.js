// kb view --list: filter the rows on the page (or ask the server again), j/k to move, Enter to open.
(function () {
  "use strict";
  var form = document.getElementById("filter");
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.listing tbody tr"));
  var count = document.getElementById("count");
  var focused = -1;

  function visible() { return rows.filter(function (r) { return !r.hidden; }); }

  function apply() {
    var outcome = document.getElementById("f-outcome").value;
    var domain = document.getElementById("f-domain").value.trim().toLowerCase();
    var text = document.getElementById("f-text").value.trim().toLowerCase();
    rows.forEach(function (r) {
      var task = r.querySelector(".task").textContent.toLowerCase();
      r.hidden = (outcome !== "all" && r.dataset.outcome !== outcome) ||
        (domain !== "" && r.dataset.domain.toLowerCase() !== domain) ||
        (text !== "" && task.indexOf(text) < 0);
    });
    count.textContent = visible().length + " of " + rows.length + " shown";
  }

  function move(dir) {
    var shown = visible();
    if (!shown.length) { return; }
    var at = shown.indexOf(rows[focused]);
    var next = shown[Math.max(0, Math.min(shown.length - 1, at + dir))];
    if (rows[focused]) { rows[focused].classList.remove("focused"); }
    focused = rows.indexOf(next);
    next.classList.add("focused");
    next.scrollIntoView({ block: "nearest" });
    document.body.dataset.focus = next.dataset.id;
  }

  form.addEventListener("submit", function (ev) {
    if (form.dataset.live === "1") { return; }
    ev.preventDefault();
    apply();
  });
  ["f-outcome", "f-text"].forEach(function (id) {
    document.getElementById(id).addEventListener(id === "f-text" ? "input" : "change", function () {
      if (form.dataset.live === "1" && id === "f-outcome") { form.submit(); return; }
      apply();
    });
  });

  document.addEventListener("keydown", function (ev) {
    var tag = ev.target && ev.target.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (tag === "INPUT" || tag === "SELECT") {
      if (ev.key === "Escape") { ev.target.blur(); }
      return;
    }
    if (ev.key === "j" || ev.key === "ArrowDown") { ev.preventDefault(); move(1); }
    if (ev.key === "k" || ev.key === "ArrowUp") { ev.preventDefault(); move(-1); }
    if (ev.key === "Enter" && rows[focused]) {
      var a = rows[focused].querySelector("a");
      if (a) { a.click(); }
    }
  });
  apply();
  document.body.dataset.ready = "1";
}());
