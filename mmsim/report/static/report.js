/* mmsim report: the transcript viewer. Filters live in the URL hash
   (#run=0&receiver=r1&provider=p1&policy=binary&outcome=corrected&round=2). */
(function () {
  "use strict";
  var errors = document.getElementById("js-errors");
  window.addEventListener("error", function (e) { errors.textContent += String(e.message) + "\n"; });
  var data = JSON.parse(document.getElementById("mmsim-data").textContent);
  var eps = data.episodes;
  var PAGE = 50;
  var limit = PAGE;
  var FIELDS = [["run", "run"], ["receiver", "receiver"], ["provider", "provider"],
                ["policy", "policy"], ["outcome", "outcome"], ["round", "round"]];
  var OUTCOME_LABEL = {corrected: "corrected", never_corrected: "never corrected",
                       regressed: "regressed", first_correct: "first correct", failed: "failed",
                       correct: "correct", wrong: "wrong", scored: "scored"};

  function parseHash() {
    var out = {};
    var h = window.location.hash.replace(/^#/, "");
    if (!h) return out;
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }
  function writeHash(f) {
    var parts = [];
    if (f.view) parts.push("view=" + encodeURIComponent(f.view));
    FIELDS.forEach(function (fd) {
      if (f[fd[0]] !== undefined && f[fd[0]] !== "") {
        parts.push(encodeURIComponent(fd[0]) + "=" + encodeURIComponent(f[fd[0]]));
      }
    });
    var h = parts.join("&");
    if (h !== window.location.hash.replace(/^#/, "")) window.location.hash = h;
    else render();
  }
  function value(ep, key) { return String(ep[key]); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function label(key, v) {
    if (key === "run") return data.runs[Number(v)] ? data.runs[Number(v)].label : v;
    if (key === "outcome") return OUTCOME_LABEL[v] || v;
    return v;
  }

  var filtersEl = document.getElementById("filters");
  var selects = {};
  FIELDS.forEach(function (fd) {
    var key = fd[0];
    var seen = {};
    var vals = [];
    eps.forEach(function (ep) { var v = value(ep, key); if (!seen[v]) { seen[v] = 1; vals.push(v); } });
    vals.sort(function (a, b) {
      var na = Number(a), nb = Number(b);
      return (!isNaN(na) && !isNaN(nb)) ? na - nb : (a < b ? -1 : a > b ? 1 : 0);
    });
    var lab = el("label", null, key === "round" ? "rounds played" : fd[1]);
    var sel = el("select");
    sel.id = "filter-" + key;
    sel.name = key;
    var all = el("option", null, "all");
    all.value = "";
    sel.appendChild(all);
    vals.forEach(function (v) { var o = el("option", null, label(key, v)); o.value = v; sel.appendChild(o); });
    sel.addEventListener("change", function () {
      var f = parseHash();
      f[key] = sel.value;
      limit = PAGE;
      writeHash(f);
    });
    lab.appendChild(sel);
    filtersEl.appendChild(lab);
    selects[key] = sel;
  });

  function turnEvent(ev) {
    var many = (ev.images || []).length > 4;  // video frames: a filmstrip of small thumbnails
    var d = el("div", "event " + (ev.role === "user" ? "user" : "turn") + (many ? " strip" : ""));
    d.appendChild(el("span", "who", ev.role === "user" ? "prompt" +
      (many ? " · " + ev.images.length + " frames" : "") : ev.role));
    (ev.images || []).forEach(function (sha) {
      if (data.images[sha]) {
        var img = el("img");
        img.src = data.images[sha];
        img.alt = "image " + sha.slice(0, 12);
        img.title = "sha256 " + sha;
        img.setAttribute("data-sha", sha);
        d.appendChild(img);
      } else {
        d.appendChild(el("span", "missing-image", "image " + sha.slice(0, 12) + " not available"));
      }
    });
    (ev.videos || []).forEach(function (v) { d.appendChild(el("div", "video", "video: " + v)); });
    if (ev.images && ev.images.length) d.appendChild(el("br"));
    d.appendChild(document.createTextNode(ev.text));
    return d;
  }
  function num(v) { return typeof v === "number" ? String(Math.round(v * 1000) / 1000) : String(v); }
  function resultLine(ev) {
    var bits = [];
    if (ev.correct === true) bits.push("\u2713 correct");
    else if (ev.correct === false) bits.push("\u2717 wrong");
    if (ev.label !== null && ev.label !== undefined)
      bits.push(ev.label ? "paraphrase of the reference (should score high)" :
        "corrupted reference" + (ev.perturbation ? " (" + ev.perturbation + ")" : "") +
        " (should score low)");
    if (ev.unparsed) bits.push("answer: unparsed");
    else if (ev.answer !== null && ev.answer !== undefined) bits.push("answer: " + ev.answer);
    if (ev.gold !== null && ev.gold !== undefined)
      bits.push((ev.what === "dyn_result" && ev.score !== null ? "reference: " : "expected: ") + ev.gold);
    if (ev.score !== null && ev.score !== undefined) bits.push("judge score " + num(ev.score));
    if (ev.reward !== null && ev.reward !== undefined) {
      var parts = [];
      Object.keys(ev.rewards || {}).forEach(function (k) { parts.push(k + " " + num(ev.rewards[k])); });
      bits.push("reward " + num(ev.reward) + (parts.length ? " (" + parts.join(" + ") + ")" : ""));
    }
    return bits.join(" \u00b7 ");
  }
  function renderEvent(ev, ep) {
    var d;
    if (ev.t === "turn") return turnEvent(ev);
    if (ev.t === "response") {
      d = el("div", "event response");
      d.appendChild(el("span", "who", (ep.kind === "feedback" || ep.kind === "screen" ?
        "receiver " + (ev.sender || "") + " · round " + ev.round : "model " + (ev.sender || ""))));
      d.appendChild(document.createTextNode(ev.text || ""));
      if (ev.error) d.appendChild(el("div", "error", "error: " + ev.error));
      return d;
    }
    if (ev.t === "grade") {
      d = el("div", "event grade " + (ev.correct ? "ok" : "bad"));
      d.textContent = (ev.correct ? "\u2713 correct" : "\u2717 wrong") + " · extracted answer: " +
        (ev.unparsed ? "unparsed" : ev.answer) + " · expected: " + ev.expected;
      return d;
    }
    if (ev.t === "feedback") {
      d = el("div", "event feedback");
      d.appendChild(el("span", "who", "feedback " + (ev.sender || "") + " · " + ev.kind +
        " (" + ev.policy + ")" + (ev.leaked ? " · LEAKED the answer" : "") +
        (ev.reveals ? " · reveals the answer" : "")));
      d.appendChild(document.createTextNode(ev.text || ""));
      return d;
    }
    if (ev.t === "verdict") {
      d = el("div", "event verdict");
      d.appendChild(el("span", "who", "judge " + (ev.sender || "") + " · score " +
        (ev.score === null || ev.score === undefined ? "unparsed" : num(ev.score))));
      d.appendChild(document.createTextNode(ev.text || ""));
      return d;
    }
    if (ev.t === "result") {
      d = el("div", "event result " + (ev.correct === true ? "ok" : ev.correct === false ? "bad" : ""));
      d.appendChild(el("span", "who", "scored" + (ev.sender ? " by " + ev.sender : "") +
        " (" + ev.what + ")"));
      d.appendChild(el("div", "verdict-line", resultLine(ev)));
      var dl = el("div", "fields");
      (ev.fields || []).forEach(function (f) {
        var s = el("span", "field " + f[0]);
        s.appendChild(el("b", null, f[0] + ": "));
        s.appendChild(document.createTextNode(f[1]));
        dl.appendChild(s);
      });
      d.appendChild(dl);
      var det = el("details");
      det.appendChild(el("summary", null, "all fields"));
      det.appendChild(el("pre", null, ev.text || ""));
      d.appendChild(det);
      return d;
    }
    d = el("div", "event " + ev.t);
    d.textContent = ev.t + ": " + (ev.score !== undefined ? ev.score + " " : "") + (ev.text || "");
    return d;
  }
  function renderEpisode(ep) {
    var a = el("article", "episode");
    a.setAttribute("data-outcome", ep.outcome);
    a.setAttribute("data-id", ep.id);
    var h = el("header");
    h.appendChild(el("span", "badge " + ep.outcome, OUTCOME_LABEL[ep.outcome] || ep.outcome));
    h.appendChild(el("b", null, ep.receiver + (ep.kind === "feedback" ?
      " \u2190 " + ep.provider + " / " + ep.policy :
      ep.kind === "screen" ? " (screening)" : " (" + ep.kind + " / " + ep.policy + ")")));
    h.appendChild(el("span", null, "item " + ep.sample + " · " + ep.category + " · rounds " + ep.round +
      (data.runs.length > 1 ? " · " + label("run", String(ep.run)) : "") +
      (ep.simulated ? " · simulated" : "")));
    h.appendChild(el("span", "eid", ep.id));
    a.appendChild(h);
    if (ep.error) a.appendChild(el("div", "error-box", "failed: " + ep.error));
    ep.events.forEach(function (ev) { a.appendChild(renderEvent(ev, ep)); });
    return a;
  }
  function render() {
    var f = parseHash();
    // #view=transcripts shows the viewer alone (the banner stays)
    document.body.classList.toggle("view-transcripts", f.view === "transcripts");
    FIELDS.forEach(function (fd) { selects[fd[0]].value = f[fd[0]] || ""; });
    var match = eps.filter(function (ep) {
      return FIELDS.every(function (fd) {
        var v = f[fd[0]];
        return v === undefined || v === "" || value(ep, fd[0]) === v;
      });
    });
    var box = document.getElementById("episodes");
    while (box.firstChild) box.removeChild(box.firstChild);
    var frag = document.createDocumentFragment();
    match.slice(0, limit).forEach(function (ep) { frag.appendChild(renderEpisode(ep)); });
    box.appendChild(frag);
    var status = document.getElementById("viewer-status");
    status.textContent = "Showing " + Math.min(limit, match.length) + " of " + match.length +
      " matching episodes (" + eps.length + " embedded).";
    status.setAttribute("data-matching", String(match.length));
    var more = document.getElementById("more");
    more.hidden = match.length <= limit;
    document.getElementById("transcripts").setAttribute("data-rendered", "1");
  }
  document.getElementById("more").addEventListener("click", function () { limit += PAGE; render(); });
  window.addEventListener("hashchange", function () { limit = PAGE; render(); });
  render();
})();
