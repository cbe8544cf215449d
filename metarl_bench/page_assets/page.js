// The leaderboard page's behaviour: sortable tables, row filters, the adaptation-curve charts
// (drawn from the data embedded in the page, agents toggled on and off), and the "compare A with
// B" views. Plain DOM code, no library and no network: the page works from file://.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("lb-data").textContent);
  var SVGNS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, parent) {
    var el = document.createElementNS(SVGNS, tag);
    for (var k in attrs) { if (attrs[k] !== null && attrs[k] !== undefined) el.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(el);
    return el;
  }
  function r3(v) { return Math.round(v * 1000) / 1000; }

  // -- markers: the matplotlib marker codes the plots use, as SVG paths centred on (x, y) --------
  function poly(pts) { return "M" + pts.map(function (p) { return r3(p[0]) + "," + r3(p[1]); }).join("L") + "Z"; }
  function regular(x, y, r, n, rot) {
    var pts = [];
    for (var i = 0; i < n; i++) { var a = rot + 2 * Math.PI * i / n; pts.push([x + r * Math.sin(a), y - r * Math.cos(a)]); }
    return poly(pts);
  }
  function star(x, y, r) {
    var pts = [];
    for (var i = 0; i < 10; i++) { var a = Math.PI * i / 5, q = i % 2 ? r * 0.42 : r; pts.push([x + q * Math.sin(a), y - q * Math.cos(a)]); }
    return poly(pts);
  }
  function cross(x, y, r, rot) {  // a filled plus, rotated by rot
    var w = r * 0.36, base = [[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r], [-w, r], [-w, w], [-r, w], [-r, -w], [-w, -w]];
    var c = Math.cos(rot), s = Math.sin(rot);
    return poly(base.map(function (p) { return [x + p[0] * c - p[1] * s, y + p[0] * s + p[1] * c]; }));
  }
  function markerPath(code, x, y, r) {
    switch (code) {
      case "s": return poly([[x - r * 0.85, y - r * 0.85], [x + r * 0.85, y - r * 0.85], [x + r * 0.85, y + r * 0.85], [x - r * 0.85, y + r * 0.85]]);
      case "^": return regular(x, y + r * 0.15, r * 1.1, 3, 0);
      case "v": return regular(x, y - r * 0.15, r * 1.1, 3, Math.PI);
      case "<": return regular(x + r * 0.15, y, r * 1.1, 3, -Math.PI / 2);
      case ">": return regular(x - r * 0.15, y, r * 1.1, 3, Math.PI / 2);
      case "D": return regular(x, y, r * 1.05, 4, 0);
      case "h": return regular(x, y, r, 6, 0);
      case "p": return regular(x, y, r * 1.02, 5, 0);
      case "*": return star(x, y, r * 1.35);
      case "P": return cross(x, y, r, 0);
      case "X": return cross(x, y, r, Math.PI / 4);
      default:  // "o"
        return "M" + r3(x - r) + "," + r3(y) + "a" + r + "," + r + " 0 1,0 " + 2 * r + ",0a" + r + "," + r + " 0 1,0 " + -2 * r + ",0Z";
    }
  }
  function marker(parent, st, x, y, r) {
    return svg("path", { d: markerPath(st.marker, x, y, r), fill: st.hollow ? "#fff" : st.color, stroke: st.color,
                         "stroke-width": st.hollow ? 1.4 : 0.8 }, parent);
  }
  function dashArray(st, w) { return st.dashes.length ? st.dashes.map(function (d) { return d * w; }).join(" ") : null; }

  // A small key: a line segment in the agent's dash with its marker, as in the plots.
  function keyIcon(st) {
    var s = svg("svg", { width: 26, height: 14, viewBox: "0 0 26 14", "aria-hidden": "true" });
    svg("line", { x1: 1, y1: 7, x2: 25, y2: 7, stroke: st.color, "stroke-width": 2, "stroke-dasharray": dashArray(st, 1.6) }, s);
    marker(s, st, 13, 7, 4.2);
    return s;
  }
  function fillKeys(root) {
    var els = root.querySelectorAll(".key[data-style]");
    for (var i = 0; i < els.length; i++) {
      var st = DATA.styles[els[i].getAttribute("data-style")];
      if (st && !els[i].querySelector("svg")) els[i].insertBefore(keyIcon(st), els[i].firstChild);
    }
  }

  // -- sortable tables ------------------------------------------------------------------------
  function cellValue(row, col) {
    var td = row.children[col];
    if (!td) return null;
    var v = td.getAttribute("data-v");
    if (v === null) v = td.textContent.trim();
    return v === "" ? null : v;
  }
  function sortTable(table, col, dir) {
    var th = table.tHead.rows[0].children[col];
    var numeric = th.getAttribute("data-sort") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._pos = i; });
    rows.sort(function (a, b) {
      var x = cellValue(a, col), y = cellValue(b, col);
      if (x === null || y === null) return (x === null) - (y === null) || a._pos - b._pos;  // empty cells last
      var c = numeric ? parseFloat(x) - parseFloat(y) : (x.toLowerCase() < y.toLowerCase() ? -1 : x.toLowerCase() > y.toLowerCase() ? 1 : 0);
      return (dir === "ascending" ? c : -c) || a._pos - b._pos;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    var ths = table.tHead.rows[0].children;
    for (var i = 0; i < ths.length; i++) { if (ths[i].hasAttribute("data-sort")) ths[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
  }
  function initSorting(table) {
    var ths = table.tHead.rows[0].children;
    Array.prototype.forEach.call(ths, function (th, col) {
      if (!th.hasAttribute("data-sort")) return;
      th.tabIndex = 0;
      th.title = "Sort by this column (click again to reverse)";
      function go() {
        var now = th.getAttribute("aria-sort");
        var first = th.getAttribute("data-first") || (th.getAttribute("data-sort") === "num" ? "descending" : "ascending");
        sortTable(table, col, now ? (now === "ascending" ? "descending" : "ascending") : first);
      }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    });
  }

  // -- filters --------------------------------------------------------------------------------
  function initFilter(box) {
    var table = document.getElementById(box.getAttribute("data-for"));
    var par = box.querySelector("select"), name = box.querySelector("input"), count = box.querySelector(".count");
    function apply() {
      var p = par.value, q = name.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        var ok = (!p || r.getAttribute("data-paradigm") === p) && (!q || r.getAttribute("data-name").toLowerCase().indexOf(q) >= 0);
        r.classList.toggle("hidden", !ok);
        if (ok) shown++;
      }
      count.textContent = shown + " of " + rows.length + " rows";
    }
    par.addEventListener("change", apply);
    name.addEventListener("input", apply);
    apply();
  }

  // -- charts ---------------------------------------------------------------------------------
  function niceStep(span, n) {
    var raw = span / Math.max(n, 1), mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  function ticks(lo, hi, n, integer) {
    var step = niceStep(hi - lo || 1, n);
    if (integer) step = Math.max(1, Math.round(step));
    var out = [], t = Math.ceil(lo / step - 1e-9) * step;
    for (; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return { values: out, step: step };
  }
  function fmtTick(v, step) {
    var d = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    return v.toFixed(step % 1 === 0 && Math.abs(step) >= 1 ? 0 : d);
  }

  function drawChart(box) {
    var b = DATA.benchmarks[+box.getAttribute("data-bench")];
    var shown = box._shown;
    var width = Math.max(300, Math.floor(box.clientWidth || 760));
    var height = Math.round(Math.max(240, Math.min(420, width * 0.56)));
    var m = { l: 56, r: width < 480 ? 24 : 70, t: 10, b: 40 };
    var W = width - m.l - m.r, H = height - m.t - m.b;
    var names = b.rows.map(function (r) { return r.variant; }).filter(function (v) { return shown[v] && b.curves[v]; });
    var refs = [];
    if (b.refs.random !== null) refs.push({ name: "random", value: b.refs.random, style: DATA.references.random });
    if (b.refs.oracle !== null) refs.push({ name: "oracle", value: b.refs.oracle, style: DATA.references.top });
    var xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
    names.forEach(function (v) {
      var c = b.curves[v];
      c.x.concat(c.fx).forEach(function (x) { xlo = Math.min(xlo, x); xhi = Math.max(xhi, x); });
      c.m.forEach(function (y, i) { ylo = Math.min(ylo, y - c.h[i]); yhi = Math.max(yhi, y + c.h[i]); });
      c.fm.forEach(function (y, i) { ylo = Math.min(ylo, y - c.fh[i]); yhi = Math.max(yhi, y + c.fh[i]); });
    });
    refs.forEach(function (r) { ylo = Math.min(ylo, r.value); yhi = Math.max(yhi, r.value); });
    if (!isFinite(xlo)) { xlo = 0; xhi = b.budget || 1; }
    if (!isFinite(ylo)) { ylo = 0; yhi = 1; }
    if (yhi - ylo < 1e-12) { ylo -= 0.5; yhi += 0.5; }
    var pad = (yhi - ylo) * 0.05; ylo -= pad; yhi += pad;
    var xpad = (xhi - xlo || 1) * 0.03, x0 = xlo - xpad, x1 = xhi + xpad;
    function X(v) { return m.l + (v - x0) / (x1 - x0) * W; }
    function Y(v) { return m.t + (1 - (v - ylo) / (yhi - ylo)) * H; }

    var old = box.querySelector("svg");
    var s = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                         "aria-label": "Adaptation curves on " + b.id });
    var yt = ticks(ylo, yhi, Math.max(3, Math.round(H / 55)), false);
    yt.values.forEach(function (v) {
      svg("line", { x1: m.l, x2: m.l + W, y1: r3(Y(v)), y2: r3(Y(v)), "class": "grid" }, s);
      var t = svg("text", { x: m.l - 6, y: r3(Y(v) + 4), "text-anchor": "end" }, s); t.textContent = fmtTick(v, yt.step);
    });
    var xt = ticks(xlo, xhi, Math.max(3, Math.round(W / 80)), true);
    xt.values.forEach(function (v) {
      svg("line", { x1: r3(X(v)), x2: r3(X(v)), y1: m.t, y2: m.t + H, "class": "grid" }, s);
      var t = svg("text", { x: r3(X(v)), y: m.t + H + 16, "text-anchor": "middle" }, s); t.textContent = fmtTick(v, xt.step);
    });
    svg("rect", { x: m.l, y: m.t, width: W, height: H, "class": "axis" }, s);
    var xl = svg("text", { x: m.l + W / 2, y: height - 6, "text-anchor": "middle" }, s); xl.textContent = b.xlabel;
    var yl = svg("text", { x: 12, y: m.t + H / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (m.t + H / 2) + ")" }, s);
    yl.textContent = b.ylabel;

    refs.forEach(function (r) {
      var g = svg("g", { "class": "reference", "data-reference": r.name }, s);
      svg("line", { x1: m.l, x2: m.l + W, y1: r3(Y(r.value)), y2: r3(Y(r.value)), stroke: r.style.color,
                    "stroke-width": r.style.width, "stroke-dasharray": r.style.dashes.join(" ") }, g);
      var lab = svg("text", { x: m.l + W + 4, y: r3(Y(r.value) + 4), "text-anchor": "start" }, g);
      lab.textContent = width < 480 ? "" : r.name;
      svg("title", {}, g).textContent = r.name + " reference: " + r.value;
    });

    var n = names.length, span = (xhi - xlo) || 1;
    // Draw the worst-ranked first, so the better-ranked lie on top (as in the plots).
    names.slice().reverse().forEach(function (v) {
      var i = names.indexOf(v), c = b.curves[v], st = DATA.styles[b.styles[v]];
      var g = svg("g", { "class": "series", "data-variant": v }, s);
      svg("title", {}, g).textContent = v;
      if (c.x.length > 1) {
        var up = c.x.map(function (x, k) { return [X(x), Y(c.m[k] + c.h[k])]; });
        var down = c.x.map(function (x, k) { return [X(x), Y(c.m[k] - c.h[k])]; }).reverse();
        svg("path", { d: poly(up.concat(down)), fill: st.color, "fill-opacity": 0.16, stroke: "none", "class": "band" }, g);
        svg("path", { d: "M" + c.x.map(function (x, k) { return r3(X(x)) + "," + r3(Y(c.m[k])); }).join("L"), fill: "none",
                      stroke: st.color, "stroke-width": 2, "stroke-dasharray": dashArray(st, 2), "class": "line" }, g);
      } else if (c.x.length === 1) {
        svg("line", { x1: r3(X(c.x[0])), x2: r3(X(c.x[0])), y1: r3(Y(c.m[0] - c.h[0])), y2: r3(Y(c.m[0] + c.h[0])),
                      stroke: st.color, "stroke-width": 1.3 }, g);
      }
      // Markers as in the plots: on every point of a short line, else about 12, staggered; lines
      // that coincide (c.slot: [turn, group size]) put theirs on alternate points.
      var every = c.x.length <= 25 ? 1 : Math.ceil(c.x.length / 12), off;
      if (c.slot[1] > 1) { every *= c.slot[1]; off = c.slot[0] * Math.max(1, Math.floor(every / c.slot[1])); }
      else off = every > 1 ? Math.floor(i * every / Math.max(n, 1)) : 0;
      c.x.forEach(function (x, k) {
        if ((k - off) % every !== 0) return;
        var mk = marker(g, st, X(x), Y(c.m[k]), 3.6);
        svg("title", {}, mk).textContent = v + " at x = " + x + ": " + c.m[k] + " \u00b1 " + c.h[k];
      });
      if (c.fx.length && c.x.length) {
        var dodge = n > 1 ? 0.006 * span * (i - (n - 1) / 2) : 0;
        var lastX = c.x[c.x.length - 1], lastY = c.m[c.m.length - 1];
        c.fx.forEach(function (fx, k) {
          var xx = X(fx + dodge);
          svg("path", { d: "M" + r3(X(lastX)) + "," + r3(Y(lastY)) + "L" + r3(xx) + "," + r3(Y(c.fm[k])), fill: "none",
                        stroke: st.color, "stroke-width": 1.3, "stroke-dasharray": "1.5 3", "class": "step" }, g);
          svg("line", { x1: r3(xx), x2: r3(xx), y1: r3(Y(c.fm[k] - c.fh[k])), y2: r3(Y(c.fm[k] + c.fh[k])), stroke: st.color,
                        "stroke-width": 1.3 }, g);
          var mk = marker(g, st, xx, Y(c.fm[k]), 4.6);
          svg("title", {}, mk).textContent = v + ", final evaluation: " + c.fm[k] + " \u00b1 " + c.fh[k];
        });
      }
    });
    if (old) box.replaceChild(s, old); else box.appendChild(s);
  }

  function initChart(box) {
    var b = DATA.benchmarks[+box.getAttribute("data-bench")];
    box._shown = {};
    b.rows.forEach(function (r) { box._shown[r.variant] = true; });
    var bar = document.getElementById(box.getAttribute("data-toggles"));
    var buttons = [];
    function sync() {
      buttons.forEach(function (btn) { btn.setAttribute("aria-pressed", box._shown[btn.getAttribute("data-variant")] ? "true" : "false"); });
      drawChart(box);
    }
    b.rows.forEach(function (r) {
      if (!b.curves[r.variant]) return;
      var btn = document.createElement("button");
      btn.type = "button";
      btn.setAttribute("data-variant", r.variant);
      btn.title = "Show or hide " + r.variant + " in the chart";
      var k = document.createElement("span"); k.className = "key"; k.setAttribute("data-style", b.styles[r.variant]);
      btn.appendChild(k);
      btn.appendChild(document.createTextNode(r.variant));
      btn.addEventListener("click", function () { box._shown[r.variant] = !box._shown[r.variant]; sync(); });
      bar.appendChild(btn);
      buttons.push(btn);
    });
    [["all", true], ["none", false]].forEach(function (p) {
      var btn = document.createElement("button");
      btn.type = "button"; btn.className = "all"; btn.textContent = p[0];
      btn.title = (p[1] ? "Show" : "Hide") + " every agent";
      btn.addEventListener("click", function () { for (var v in box._shown) box._shown[v] = p[1]; sync(); });
      bar.appendChild(btn);
    });
    fillKeys(bar);
    sync();
  }

  // -- compare A with B -----------------------------------------------------------------------
  function decimals(half, value) {
    if (isFinite(half) && half > 0) return Math.min(6, Math.max(0, 1 - Math.floor(Math.log10(half))));
    if (isFinite(value) && value !== 0) return Math.min(6, Math.max(0, 3 - Math.floor(Math.log10(Math.abs(value)))));
    return 2;
  }
  function fmtCI(p, l, h) {
    var d = decimals((h - l) / 2, p);
    return p.toFixed(d) + " [" + l.toFixed(d) + ", " + h.toFixed(d) + "]";
  }
  function comparison(b, a, c) {
    // Pairs are stored as (i, j) with i ranked above j: compare i j's numbers. The reverse
    // order is their mirror image: the difference negated, the probability one minus it.
    var i = Math.min(a, c), j = Math.max(a, c), row = null;
    for (var k = 0; k < b.pairs.length; k++) { if (b.pairs[k][0] === i && b.pairs[k][1] === j) { row = b.pairs[k]; break; } }
    if (!row) return null;
    if (a === i) return { diff: [row[2], row[3], row[4]], poi: [row[5], row[6], row[7]], mirrored: false };
    return { diff: [-row[2], -row[4], -row[3]], poi: [1 - row[5], 1 - row[7], 1 - row[6]], mirrored: true };
  }
  function renderCompare(box) {
    var b = DATA.benchmarks[+box.getAttribute("data-bench")];
    var sel = box.querySelectorAll("select"), a = +sel[0].value, c = +sel[1].value;
    var out = box.querySelector(".out");
    var A = b.rows[a], B = b.rows[c];
    out.textContent = "";
    function line(text, cls) { var p = document.createElement("p"); if (cls) p.className = cls; p.textContent = text; out.appendChild(p); }
    if (a === c) { line("Pick two different agents."); return; }
    var r = comparison(b, a, c);
    if (!r) { line("No comparison stored for this pair."); return; }
    var better = b.lower ? "lower" : "higher";
    line("IQM " + A.variant + ": " + fmtCI.apply(null, A.iqm) + " (" + A.seeds + " seeds); IQM " + B.variant + ": " +
         fmtCI.apply(null, B.iqm) + " (" + B.seeds + " seeds)");
    line("IQM difference (" + A.variant + " \u2212 " + B.variant + "): " + fmtCI.apply(null, r.diff));
    line("P(" + A.variant + " beats " + B.variant + " on a task): " + fmtCI.apply(null, r.poi));
    var d = r.diff, verdict;
    if (d[1] <= 0 && 0 <= d[2]) verdict = "No clear difference: the CI of the IQM difference contains 0.";
    else verdict = ((d[0] > 0) !== b.lower ? A.variant : B.variant) + " is better (" + better + " " + b.score + ").";
    line(verdict, "verdict");
    line(r.mirrored ? "Mirrored from `metarl-bench compare " + B.variant + " " + A.variant + " --benchmark " + b.id + "` (the difference negated, the probability one minus it)."
                    : "As `metarl-bench compare " + A.variant + " " + B.variant + " --benchmark " + b.id + "` reports them.", "note");
  }
  function initCompare(box) {
    var sel = box.querySelectorAll("select");
    for (var i = 0; i < sel.length; i++) sel[i].addEventListener("change", function () { renderCompare(box); });
    renderCompare(box);
  }

  function all(q) { return Array.prototype.slice.call(document.querySelectorAll(q)); }
  all("table.sortable").forEach(initSorting);
  all(".filters[data-for]").forEach(initFilter);
  fillKeys(document);
  var charts = all(".chart[data-bench]");
  charts.forEach(initChart);
  all(".compare[data-bench]").forEach(initCompare);
  var lastWidth = window.innerWidth, timer = null;
  window.addEventListener("resize", function () {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    clearTimeout(timer);
    timer = setTimeout(function () { charts.forEach(drawChart); }, 120);
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
