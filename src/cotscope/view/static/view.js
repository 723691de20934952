// cotscope view: keyboard shortcuts and labelling. No inline script: the CSP allows this file only.
// Every piece of server data is inserted with textContent, never as HTML.
(function () {
  "use strict";
  var KEY = "cotscope-token:" + location.host;

  // The token arrives once in the URL printed at start-up (?token=...); keep it for this origin and drop it
  // from the address bar so that it is neither bookmarked nor shown.
  function takeToken() {
    var params = new URLSearchParams(location.search);
    var t = params.get("token");
    if (t) {
      try { localStorage.setItem(KEY, t); } catch (e) { /* storage off: the token lives for this page only */ }
      window.__cotscopeToken = t;
      params.delete("token");
      var q = params.toString();
      history.replaceState(null, "", location.pathname + (q ? "?" + q : "") + location.hash);
    }
  }
  function token() {
    if (window.__cotscopeToken) { return window.__cotscopeToken; }
    try { return localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  function editing(el) {
    if (!el) { return false; }
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function setStatus(text, ok) {
    var out = document.getElementById("label-status");
    if (!out) { return; }
    out.textContent = text;
    out.className = "status " + (ok ? "ok" : "bad");
  }

  function addLabelItem(lab) {
    var list = document.getElementById("labels");
    if (!list) { return; }
    var li = document.createElement("li");
    li.className = "label";
    var b = document.createElement("b");
    b.textContent = lab.name;
    li.appendChild(b);
    li.appendChild(document.createTextNode(" = "));
    var chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = lab.value;
    li.appendChild(chip);
    var who = document.createElement("span");
    who.className = "muted";
    who.textContent = " by " + (lab.author || "unknown") + " at " + String(lab.created_at || "").replace("T", " ").slice(0, 19);
    li.appendChild(who);
    if (lab.note) {
      var note = document.createElement("div");
      note.className = "note";
      note.textContent = lab.note;
      li.appendChild(note);
    }
    list.insertBefore(li, list.firstChild);
  }

  function saveLabel(value) {
    var form = document.getElementById("label-form");
    if (!form) { return; }
    if (document.body.dataset.writable !== "1") { setStatus("read-only viewer: labels cannot be stored", false); return; }
    var name = document.getElementById("label-name").value.trim();
    var val = (value || document.getElementById("label-value").value).trim();
    var note = document.getElementById("label-note").value;
    if (!name || !val) { setStatus("a label needs a name and a value", false); return; }
    if (!token()) { setStatus("no token: open the URL printed when the viewer started (with ?token=...)", false); return; }
    setStatus("saving…", true);
    fetch("/api/labels", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Cotscope-Token": token() },
      body: JSON.stringify({ trace_id: form.dataset.trace, name: name, value: val, note: note })
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; },
                           function () { return { ok: false, status: r.status, body: {} }; });
    }).then(function (res) {
      if (res.ok) {
        addLabelItem(res.body);
        document.getElementById("label-note").value = "";
        setStatus("saved " + res.body.name + " = " + res.body.value, true);
      } else {
        setStatus("not saved (" + res.status + "): " + (res.body.error || "error"), false);
      }
    }, function (e) { setStatus("not saved: " + e, false); });
  }

  function follow(rel) {
    var a = document.querySelector('a[rel="' + rel + '"]');
    if (a) { location.href = a.href; }
  }

  function toggleHelp() {
    var h = document.getElementById("help");
    if (h) { h.hidden = !h.hidden; }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.key === "Escape" && editing(document.activeElement)) { document.activeElement.blur(); return; }
    if (editing(ev.target)) { return; }
    var form = document.getElementById("label-form");
    switch (ev.key) {
      case "/": { var q = document.getElementById("q"); if (q) { ev.preventDefault(); q.focus(); } break; }
      case "j": follow("next"); break;
      case "k": follow("prev"); break;
      case "y": if (form) { ev.preventDefault(); saveLabel("true"); } break;
      case "n": if (form) { ev.preventDefault(); saveLabel("false"); } break;
      case "u": if (form) { ev.preventDefault(); saveLabel("unsure"); } break;
      case "e": { var n = document.getElementById("label-note"); if (n) { ev.preventDefault(); n.focus(); } break; }
      case "?": toggleHelp(); break;
      default: break;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    takeToken();
    var st = document.getElementById("token-state");
    if (st) {
      if (document.body.dataset.writable !== "1") { st.textContent = "read-only"; }
      else if (token()) { st.textContent = "can label"; st.className = "token-state ok"; }
      else { st.textContent = "no token: open the start-up URL to label"; }
    }
    var help = document.getElementById("help-toggle");
    if (help) { help.addEventListener("click", toggleHelp); }
    var form = document.getElementById("label-form");
    if (form) {
      form.addEventListener("submit", function (ev) { ev.preventDefault(); saveLabel(null); });
      Array.prototype.forEach.call(form.querySelectorAll("button.quick"), function (b) {
        b.addEventListener("click", function () { saveLabel(b.dataset.value); });
      });
    }
  });
}());
