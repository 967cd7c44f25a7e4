// kb view: step through a run like a program (AgentStepper): next/previous, jumps, breakpoints.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("kb-data").textContent);
  var steps = Array.prototype.slice.call(document.querySelectorAll("article.step"));
  var status = document.getElementById("status");
  var body = document.body;
  var state = { focus: -1, tools: [], errors: false, marks: {} };

  function stepAt(i) { return steps[i] || null; }
  function isError(i) { return stepAt(i) !== null && stepAt(i).dataset.error === "1"; }
  function isCall(i) { return stepAt(i) !== null && stepAt(i).dataset.call === "1"; }

  function say(text, stopped) {
    status.textContent = text;
    status.classList.toggle("stopped", Boolean(stopped));
  }

  function describe(i) {
    var el = stepAt(i);
    var who = el.querySelector(".who").textContent;
    var tool = el.dataset.tool ? " · " + el.dataset.tool : "";
    return "step " + i + " of " + (steps.length - 1) + " · " + who + tool;
  }

  function moveCursors(i) {
    var curves = document.querySelectorAll("svg.curve");
    for (var c = 0; c < curves.length; c++) {
      var svg = curves[c];
      var n = Number(svg.dataset.n);
      var cursor = svg.querySelector(".cursor");
      if (!cursor || i >= n) { if (cursor) { cursor.setAttribute("visibility", "hidden"); } continue; }
      var x = Number(svg.dataset.x0) + i * Number(svg.dataset.dx);
      cursor.setAttribute("x1", x.toFixed(1));
      cursor.setAttribute("x2", x.toFixed(1));
      cursor.setAttribute("visibility", "visible");
    }
  }

  function showTwin(i) {
    var rows = document.querySelectorAll("table.align tbody tr");
    var right = null;
    for (var r = 0; r < rows.length; r++) {
      var here = rows[r].dataset.left === String(i);
      rows[r].classList.toggle("current", here);
      if (here && rows[r].dataset.right !== undefined) { right = rows[r].dataset.right; }
    }
    var twins = document.querySelectorAll(".twin");
    for (var t = 0; t < twins.length; t++) { twins[t].hidden = twins[t].dataset.right !== right; }
    var none = document.querySelector(".twin-none");
    if (none) { none.hidden = right !== null; }
  }

  function focus(i, why, stopped) {
    if (!steps.length) { return; }
    i = Math.max(0, Math.min(steps.length - 1, i));
    var old = stepAt(state.focus);
    if (old) { old.classList.remove("focused"); old.removeAttribute("aria-current"); }
    var el = stepAt(i);
    el.classList.add("focused");
    el.setAttribute("aria-current", "step");
    state.focus = i;
    body.dataset.focus = String(i);
    if (!stopped) { delete body.dataset.stopped; }
    el.scrollIntoView({ block: "nearest" });
    el.focus({ preventScroll: true });
    moveCursors(i);
    showTwin(i);
    say((why ? why + " · " : "") + describe(i), stopped);
    try { history.replaceState(null, "", "#step-" + i); } catch (e) { /* file: pages may refuse */ }
  }

  function find(from, dir, test) {
    for (var i = from + dir; i >= 0 && i < steps.length; i += dir) {
      if (test(i)) { return i; }
    }
    return -1;
  }

  function jump(dir, test, what) {
    var i = find(state.focus, dir, test);
    if (i < 0) { say("no " + what + (dir > 0 ? " after" : " before") + " step " + state.focus); return; }
    focus(i, what);
  }

  function hitsBreakpoint(i) {
    var el = stepAt(i);
    if (state.marks[i]) { return "breakpoint on step " + i; }
    if (state.errors && isError(i)) { return "breakpoint on errors"; }
    if (isCall(i) && state.tools.indexOf(el.dataset.tool) >= 0) { return "breakpoint on tool " + el.dataset.tool; }
    return null;
  }

  function resume() {
    for (var i = state.focus + 1; i < steps.length; i++) {
      var why = hitsBreakpoint(i);
      if (why) {
        body.dataset.stopped = why;
        focus(i, "stopped at " + why, true);
        return;
      }
    }
    focus(steps.length - 1, "ran to the end: no breakpoint ahead");
  }

  function renderChips() {
    var list = document.getElementById("bp-list");
    list.textContent = "";
    state.tools.forEach(function (tool) {
      var chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.tool = tool;
      chip.textContent = tool;
      var x = document.createElement("button");
      x.type = "button";
      x.textContent = "×";
      x.title = "remove the breakpoint on " + tool;
      x.addEventListener("click", function () {
        state.tools = state.tools.filter(function (t) { return t !== tool; });
        renderChips();
      });
      chip.appendChild(x);
      list.appendChild(chip);
    });
    body.dataset.breakpoints = state.tools.join(",");
  }

  function addTool(name) {
    name = name.trim();
    if (name && state.tools.indexOf(name) < 0) { state.tools.push(name); renderChips(); }
  }

  function toggleStep(i) {
    state.marks[i] = !state.marks[i];
    stepAt(i).classList.toggle("bp", state.marks[i]);
  }

  function fold(i) {
    var el = stepAt(i);
    if (!el) { return; }
    var folds = el.querySelectorAll("details.fold");
    if (!folds.length) { return; }
    var open = !folds[0].open;
    for (var f = 0; f < folds.length; f++) { folds[f].open = open; }
  }

  function target(what) {
    var i = data[what];
    if (i === null || i === undefined) { say("no " + what + " step in this run"); return; }
    focus(i, what === "blamed" ? "blamed step" : what === "label" ? "labelled step" : "divergence from the success");
  }

  var actions = {
    next: function () { focus(state.focus + 1); },
    prev: function () { focus(state.focus - 1); },
    "next-error": function () { jump(1, isError, "error"); },
    "prev-error": function () { jump(-1, isError, "error"); },
    "next-call": function () { jump(1, isCall, "tool call"); },
    "prev-call": function () { jump(-1, isCall, "tool call"); },
    blamed: function () { target("blamed"); },
    label: function () { target("label"); },
    divergence: function () { target("divergence"); },
    "continue": resume,
    first: function () { focus(0); },
    last: function () { focus(steps.length - 1); },
    fold: function () { fold(state.focus); },
    help: function () { var h = document.getElementById("help"); h.hidden = !h.hidden; }
  };

  var keys = {
    j: "next", ArrowDown: "next", k: "prev", ArrowUp: "prev", n: "next-error", N: "prev-error",
    t: "next-call", T: "prev-call", b: "blamed", l: "label", d: "divergence", c: "continue",
    e: "fold", Enter: "fold", g: "first", G: "last", "?": "help"
  };

  document.addEventListener("keydown", function (ev) {
    var tag = ev.target && ev.target.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
      if (ev.key === "Escape") { ev.target.blur(); }
      return;
    }
    if (ev.key === "Escape") { document.getElementById("help").hidden = true; return; }
    var act = keys[ev.key];
    if (!act) { return; }
    if (ev.key === "Enter" && tag === "SUMMARY") { return; }
    ev.preventDefault();
    actions[act]();
  });

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-act],[data-goto],circle.pt,table.align tr,article.step") : null;
    if (!el) { return; }
    if (el.dataset.act === "bp-step") { toggleStep(Number(el.closest("article.step").dataset.index)); return; }
    if (el.dataset.act && actions[el.dataset.act]) { actions[el.dataset.act](); return; }
    if (el.dataset.goto !== undefined) { focus(Number(el.dataset.goto)); return; }
    if (el.matches("circle.pt")) { focus(Number(el.dataset.step)); return; }
    if (el.matches("table.align tr") && el.dataset.left !== undefined) { focus(Number(el.dataset.left)); return; }
    if (el.matches("article.step") && !ev.target.closest("summary,a,button")) {
      var i = Number(el.dataset.index);
      if (i !== state.focus) { focus(i); }
    }
  });

  document.getElementById("bp-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var input = document.getElementById("bp-tool");
    addTool(input.value);
    input.value = "";
  });
  document.getElementById("bp-errors").addEventListener("change", function (ev) {
    state.errors = ev.target.checked;
    body.dataset.breakOnErrors = state.errors ? "1" : "0";
  });

  var start = /^#step-(\d+)$/.exec(location.hash);
  if (steps.length) {
    focus(start ? Number(start[1]) : 0);
    if (!start) { say(describe(0) + " · j/k to step, b for the blamed step, ? for keys"); }
  }
  body.dataset.ready = "1";
}());
