// testbed view: the page. Routes: #run/ID[/SEED], #comparison/ID, #study/ID, and the list.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const main = $("#main");
const fmt = (v) => v === null || v === undefined ? "" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
let timers = [];
window.viewLatencies = [];  // ms from a slider move to its frame shown (the benchmark reads them)

async function get(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function route() {
  timers.forEach(clearInterval); timers = [];
  const [kind, id, seed] = location.hash.replace(/^#/, "").split("/");
  const show = { run: showRun, comparison: showComparison, study: showStudy }[kind] || showList;
  show(id, seed === undefined ? undefined : Number(seed)).catch((e) => { main.innerHTML = `<p class="note">${esc(e.message)}</p>`; });
}
window.addEventListener("hashchange", route);

// ---- a table whose columns sort on click -------------------------------------------------
function table(columns, rows, onPick, picked) {
  const t = document.createElement("table");
  let key = null, dir = 1;
  const draw = () => {
    const sorted = key === null ? rows : [...rows].sort((a, b) => ((a[key] ?? -Infinity) > (b[key] ?? -Infinity) ? dir : -dir));
    t.innerHTML = "<thead><tr>" + columns.map((c) => `<th data-c="${esc(c)}">${esc(c)}${c === key ? (dir > 0 ? " ▲" : " ▼") : ""}</th>`).join("") + "</tr></thead><tbody>" +
      sorted.map((r, i) => `<tr data-i="${rows.indexOf(r)}" class="${picked !== undefined && r === picked() ? "picked" : ""}">` + columns.map((c) => `<td>${esc(fmt(r[c]))}</td>`).join("") + "</tr>").join("") + "</tbody>";
  };
  t.addEventListener("click", (e) => {
    const th = e.target.closest("th"), tr = e.target.closest("tbody tr");
    if (th) { const c = th.dataset.c; dir = key === c ? -dir : 1; key = c; draw(); }
    else if (tr && onPick) { onPick(rows[Number(tr.dataset.i)]); draw(); }
  });
  draw();
  return t;
}

// ---- the list of what was given ---------------------------------------------------------
async function showList() {
  $("#where").textContent = "";
  const { sources } = await get("/api/sources");
  main.innerHTML = "<h2>Runs, comparisons and studies</h2><ul id='sources'></ul>";
  for (const s of sources) {
    if (s.kind === "folder") { $("#sources").insertAdjacentHTML("beforeend", `<li>${esc(s.label)}/ (folder)</li>`); continue; }
    const kind = s.kind === "live" ? "run" : s.kind;
    $("#sources").insertAdjacentHTML("beforeend", `<li>${s.within ? "&nbsp;&nbsp;" : ""}<a href="#${kind}/${s.id}">${esc(s.label)}</a> (${s.kind === "live" ? "<span class='live'>training</span>" : s.kind})</li>`);
  }
}

// ---- frames: one slider over snapshots, images kept by the browser ------------------------
class Scrubber {
  constructor(epochs, imgs, urlOf, onMove) {
    this.epochs = epochs; this.imgs = imgs; this.urlOf = urlOf; this.onMove = onMove; this.i = epochs.length - 1;
    this.kept = new Map();  // url -> loaded Image: scrubbing only swaps a decoded image
    this.playing = null;
    window.viewScrubber = this;  // the benchmark waits on `kept.size` before timing warm scrubbing
  }
  prefetch() {
    const urls = []; for (let i = 0; i < this.epochs.length; i++) for (let k = 0; k < this.imgs.length; k++) urls.push(this.urlOf(k, i));
    let next = 0;
    const one = () => { if (next >= urls.length) return; const url = urls[next++]; if (this.kept.has(url)) return one(); const im = new Image(); im.onload = () => { this.kept.set(url, im); one(); }; im.onerror = one; im.src = url; };
    one(); one();  // two at a time: the server renders one frame at a time anyway
  }
  show(i, started = performance.now()) {
    i = Math.max(0, Math.min(this.epochs.length - 1, i)); this.i = i;
    this.imgs.forEach((img, k) => {
      const url = this.urlOf(k, i);
      img.onload = () => {
        if (this.i !== i) return;
        img.dataset.shown = String(this.epochs[i]);
        if (k === 0) window.viewLatencies.push(performance.now() - started);
      };
      img.src = url;
    });
    this.onMove(i);
  }
  nearest(epoch) { let best = 0; this.epochs.forEach((e, i) => { if (Math.abs(e - epoch) < Math.abs(this.epochs[best] - epoch)) best = i; }); return best; }
  play(button) {
    if (this.playing) { clearInterval(this.playing); this.playing = null; button.textContent = "▶ play"; return; }
    if (this.i >= this.epochs.length - 1) this.show(0);
    button.textContent = "⏸ pause";
    this.playing = setInterval(() => { if (this.i >= this.epochs.length - 1) return this.play(button); this.show(this.i + 1); }, 120);
    timers.push(this.playing);
  }
}

function sliderControls(scrub, slider, label, playButton) {
  slider.max = String(scrub.epochs.length - 1); slider.value = String(scrub.i);
  slider.addEventListener("input", () => scrub.show(Number(slider.value), performance.now()));
  playButton.addEventListener("click", () => scrub.play(playButton));
  document.onkeydown = (e) => {
    if (e.target.tagName === "INPUT" && e.target !== slider) return;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      if (e.target === slider) return;  // the slider moves itself and fires input
      e.preventDefault(); scrub.show(scrub.i + (e.key === "ArrowRight" ? 1 : -1));
    } else if (e.key === " ") { e.preventDefault(); scrub.play(playButton); }
  };
}

// ---- curves: loss (log) and accuracy, spikes marked, a click jumps there -------------------
function curves(svg, data, epochNow, onEpoch, onSpike) {
  const W = 520, H = 170, L = 58, R = 24, T = 18, B = 28;
  const ep = data.epoch || [];
  svg.setAttribute("width", W); svg.setAttribute("height", 2 * H); svg.innerHTML = "";
  if (!ep.length) { svg.innerHTML = `<text x="20" y="30">no evaluated epochs yet</text>`; return; }
  const x0 = Math.min(...ep), x1 = Math.max(Math.max(...ep), x0 + 1);
  const sx = (e) => L + (e - x0) / (x1 - x0) * (W - L - R);
  const panels = [
    { title: "loss (log scale)", cols: ["train_loss", "test_loss"], log: true, top: 0 },
    { title: "accuracy", cols: ["train_acc", "test_acc"], log: false, top: H },
  ];
  let out = "";
  for (const p of panels) {
    const vals = p.cols.flatMap((c) => data[c]).filter((v) => v !== null && (!p.log || v > 0));
    let y0 = Math.min(...vals), y1 = Math.max(...vals);
    if (p.log) { y0 = Math.log10(y0); y1 = Math.log10(y1); }
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const sy = (v) => p.top + T + (1 - ((p.log ? Math.log10(v) : v) - y0) / (y1 - y0)) * (H - T - B);
    out += `<text x="${L}" y="${p.top + 12}">${p.title}</text>`;
    out += `<line x1="${L}" y1="${p.top + H - B}" x2="${W - R}" y2="${p.top + H - B}" stroke="#888"/><line x1="${L}" y1="${p.top + T}" x2="${L}" y2="${p.top + H - B}" stroke="#888"/>`;
    for (const v of [y0, (y0 + y1) / 2, y1]) { const val = p.log ? 10 ** v : v, digits = y1 - y0 < 0.05 ? 4 : 2;
      const shown = val !== 0 && Math.abs(val) < 1e-3 ? val.toExponential(digits - 1) : val.toPrecision(digits);
      out += `<text x="${L - 4}" y="${sy(val) + 4}" text-anchor="end">${shown}</text>`; }
    for (const e of [x0, Math.round((x0 + x1) / 2), x1]) out += `<text x="${sx(e)}" y="${p.top + H - B + 14}" text-anchor="middle">${e}</text>`;
    out += `<text x="${W - R}" y="${p.top + H - 2}" text-anchor="end">epoch</text>`;
    p.cols.forEach((c, k) => {
      const pts = ep.map((e, j) => [e, data[c][j]]).filter(([, v]) => v !== null && (!p.log || v > 0));
      out += `<polyline fill="none" stroke="${k ? "#e8862a" : "#2a6fb0"}" stroke-width="1.3" points="${pts.map(([e, v]) => `${sx(e).toFixed(1)},${sy(v).toFixed(1)}`).join(" ")}"/>`;
      out += `<text x="${W - R - 70}" y="${p.top + 12 + 12 * k}" fill="${k ? "#e8862a" : "#2a6fb0"}">— ${c.split("_")[0]}</text>`;
    });
  }
  (data.spikes || []).forEach((s, k) => { out += `<path class="spike" data-k="${k}" d="M${sx(s.epoch)},${T + 2} l-5,-9 h10 z"><title>spike at epoch ${s.epoch}${s.cause ? " (" + s.cause + ")" : ""}</title></path>`; });
  if (epochNow !== null) out += `<line id="now" x1="${sx(epochNow)}" x2="${sx(epochNow)}" y1="${T}" y2="${2 * H - B}" stroke="#d22" stroke-dasharray="4 3"/>`;
  svg.innerHTML = out;
  svg.onclick = (e) => {
    const spike = e.target.closest(".spike");
    if (spike) return onSpike(data.spikes[Number(spike.dataset.k)]);
    const box = svg.getBoundingClientRect(), px = e.clientX - box.left;
    if (px >= L && px <= W - R) onEpoch(x0 + (px - L) / (W - L - R) * (x1 - x0));
  };
}

// ---- a run ------------------------------------------------------------------------------------
async function showRun(id, seedAsked) {
  const run = await get(`/api/run/${id}`);
  $("#where").textContent = `run ${run.name} — ${run.path}`;
  const seeds = run.seeds.map((r) => r.seed);
  let seed = seedAsked !== undefined && seeds.includes(seedAsked) ? seedAsked : seeds[0];
  const live = run.kind === "live";
  main.innerHTML = `<h2>${esc(run.name)} ${live ? "<span class='live' id='live'>training…</span>" : ""}</h2>
    <div class="row"><div class="side"><div id="seeds"></div><h3>Curves, seed <span id="curve-seed"></span></h3><svg id="curves"></svg><div id="spikes"></div></div>
    <div><div class="controls"><button id="play">▶ play</button><input type="range" id="slider" min="0" value="0" step="1">
    <span id="epoch-label"></span><a id="png" download>PNG</a> <a id="svg">SVG</a></div>
    <p id="no-frames" class="note"></p><img id="frame" class="frame" alt="frame"></div></div>`;
  let scrub = null, data = null;
  const pick = (r) => { seed = r.seed; history.replaceState(null, "", `#run/${id}/${seed}`); loadSeed(); };
  $("#seeds").appendChild(table(Object.keys(run.seeds[0] || { seed: 0 }), run.seeds, pick, () => run.seeds.find((r) => r.seed === seed)));
  const drawCurves = () => curves($("#curves"), data, scrub ? scrub.epochs[scrub.i] : null,
    (epoch) => scrub && scrub.show(scrub.nearest(epoch)), (s) => { showSpike(s); if (scrub) scrub.show(scrub.nearest(s.epoch)); });
  const showSpike = (s) => {
    const rows = (entries) => "<table>" + entries.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("") + "</table>";
    const jumps = Object.entries(s).filter(([k]) => k.startsWith("jump_"));
    const head = [["peak step", s.peak], ["loss ratio to baseline", s.ratio], ["cause", s.cause], ["why", s.cause_reason], ["loss jump of the step", s.jump]]
      .filter(([, v]) => v !== undefined);
    const steps = run.spike_steps && run.epochs.length ? `<p>The step itself: <button id="step-before">before</button> <button id="step-after">after</button> <span id="step-note" class="note"></span></p>` : "";
    $("#spikes").innerHTML = `<h3>Spike at epoch ${s.epoch}${s.cause ? ": " + esc(s.cause) : ""}</h3>` + steps + rows(head) +
      (jumps.length ? "<h4>Loss jump explained by each parameter group's update</h4>" + rows(jumps.map(([k, v]) => [k.slice(5), v])) : "") +
      "<details><summary>every column of the forensics</summary>" + rows(Object.entries(s).filter(([k]) => k !== "seed")) + "</details>";
    if (steps) [["#step-before", 0, "before"], ["#step-after", 1, "after"]].forEach(([sel, which, word]) => $(sel).addEventListener("click", async () => {
      const url = `/api/run/${id}/spike/${seed}/${s.start}-${s.end}/${which}.png`, r = await fetch(url);
      if (!r.ok) { $("#step-note").textContent = (await r.json()).error; return; }
      const img = $("#frame");
      img.onload = () => { img.dataset.shown = `${r.headers.get("X-Step")} ${word}`; };
      img.src = url;  // fetched once: the browser keeps it
      $("#epoch-label").textContent = `${r.headers.get("X-Step")}, ${word} the spike`;
    }));
  };
  async function loadCurves() {
    data = await get(`/api/run/${id}/curves/${seed}`);
    $("#curve-seed").textContent = seed;
    drawCurves();
    if (!data.spikes.length) $("#spikes").innerHTML = "<p>no spikes in this seed</p>";
  }
  function loadSeed() {
    if (run.epochs.length) {
      const at = scrub ? scrub.i : run.epochs.length - 1;
      scrub = new Scrubber(run.epochs, [$("#frame")], (k, i) => `/api/run/${id}/frame/${seed}/${i}.png`, (i) => {
        const e = run.epochs[i];
        $("#slider").value = String(i); $("#epoch-label").textContent = `epoch ${e}`;
        $("#png").href = `/api/run/${id}/frame/${seed}/${i}.png`; $("#png").download = `${run.name}-seed${seed}-epoch${e}.png`;
        $("#svg").href = `/api/run/${id}/frame/${seed}/${i}.svg`;
        const now = $("#now"); if (now && data) drawCurves();
      });
      scrub.i = at;
      sliderControls(scrub, $("#slider"), $("#epoch-label"), $("#play"));
      scrub.show(at); scrub.prefetch();
    } else {
      $("#no-frames").textContent = live ? "frames appear when the run has finished (its snapshots are written at the end)" : run.no_frames;
      $("#slider").disabled = true; $("#play").disabled = true;
      for (const sel of ["#frame", "#png", "#svg"]) $(sel).hidden = true;
    }
    loadCurves();
  }
  // `play` and arrow keys need the scrubber; give the buttons one listener each time a seed loads
  const fresh = (sel) => { const el = $(sel); const c = el.cloneNode(true); el.replaceWith(c); };
  const load = loadSeed;
  loadSeed = () => { fresh("#play"); fresh("#slider"); load(); };
  loadSeed();
  if (live) timers.push(setInterval(async () => {
    const now = await get(`/api/run/${id}`);
    if (now.kind !== "live") return route();  // it landed: show the finished run
    data = await get(`/api/run/${id}/curves/${seed}`); drawCurves();
    $("#live").textContent = `training… epoch ${data.epoch.length ? data.epoch[data.epoch.length - 1] : 0} of ${now.total_epochs}`;
  }, 1000));
}

// ---- a comparison: its tables and figures, two runs side by side on one slider ---------------
async function showComparison(id) {
  const c = await get(`/api/comparison/${id}`);
  $("#where").textContent = `comparison — ${c.path}`;
  const options = c.runs.map((r, k) => `<option value="${k}">${esc(r.label)}</option>`).join("");
  main.innerHTML = `<h2>Comparison ${c.report ? `<a href="/files/${id}/report.html" target="_blank">(full report)</a>` : ""}</h2>
    <div class="controls">left <select id="a">${options}</select> right <select id="b">${options}</select> seed <select id="seed"></select>
    <button id="play">▶ play</button><input type="range" id="slider" min="0" value="0"><span id="epoch-label"></span></div>
    <p id="no-frames" class="note"></p><div class="pair"><img id="fa" class="frame" alt="left"> <img id="fb" class="frame" alt="right"></div>
    <h3>Tables of the report</h3>
    <div id="tables"></div><div class="figs" id="figs"></div>`;
  if (c.runs.length > 1) $("#b").value = "1";
  for (const name of ["statistics.csv", "comparison.csv"].filter((n) => c.tables[n])) {
    const t = c.tables[name], box = document.createElement("details");
    box.open = name === "statistics.csv";
    box.innerHTML = `<summary>${esc(name)} (${t.rows.length} rows)</summary>`;
    box.appendChild(table(t.columns, t.rows.map((r) => Object.fromEntries(t.columns.map((col, k) => [col, r[k]])))));
    $("#tables").appendChild(box);
  }
  c.figures.forEach((f) => $("#figs").insertAdjacentHTML("beforeend", `<img src="/files/${id}/${f}" alt="${esc(f)}">`));
  const runs = await Promise.all(c.runs.map((r) => get(`/api/run/${r.id}`)));
  const common = runs.length ? runs.map((r) => r.seeds.map((s) => s.seed)).reduce((a, b) => a.filter((s) => b.includes(s))) : [];
  $("#seed").innerHTML = common.map((s) => `<option>${s}</option>`).join("");
  const load = () => {
    const A = runs[Number($("#a").value)], B = runs[Number($("#b").value)], seed = Number($("#seed").value);
    if (!A || !B || !A.epochs.length || !B.epochs.length) { $("#no-frames").textContent = "these runs have no snapshots.npz: no frames"; return; }
    const epochs = A.epochs.filter((e) => B.epochs.includes(e));
    const index = (r, e) => r.epochs.indexOf(e);
    for (const sel of ["#play", "#slider"]) { const el = $(sel); el.replaceWith(el.cloneNode(true)); }
    const scrub = new Scrubber(epochs, [$("#fa"), $("#fb")], (k, i) => { const r = k ? B : A; return `/api/run/${r.id}/frame/${seed}/${index(r, epochs[i])}.png`; },
      (i) => { $("#slider").value = String(i); $("#epoch-label").textContent = `epoch ${epochs[i]}`; });
    sliderControls(scrub, $("#slider"), $("#epoch-label"), $("#play"));
    scrub.show(epochs.length - 1); scrub.prefetch();
  };
  ["#a", "#b", "#seed"].forEach((s) => $(s).addEventListener("change", load));
  load();
}

// ---- a study: its cells as a table and a heatmap; a cell opens its run ------------------------
async function showStudy(id) {
  const st = await get(`/api/study/${id}`);
  $("#where").textContent = `study ${st.name} — ${st.path}`;
  main.innerHTML = `<h2>Study ${esc(st.name)} ${st.report ? `<a href="/files/${id}/report.html" target="_blank">(full report)</a>` : ""}</h2>
    <div class="row"><div><h3>Success rate by cell (click a cell for its run)</h3><table class="heat" id="heat"></table></div><div id="cells"></div></div><div class="figs" id="figs"></div>`;
  const axes = st.axes;
  const value = (cell, a) => JSON.stringify(cell.values[a]);
  const rowsAxis = axes.length > 1 ? axes[0] : null, colsAxis = axes.length > 1 ? axes[1] : axes[0];
  const uniq = (a) => a === null || a === undefined ? [null] : [...new Set(st.cells.map((c) => value(c, a)))];
  const rowVals = uniq(rowsAxis), colVals = uniq(colsAxis);
  const colour = (v) => v === null || v === undefined ? "#eee" : `hsl(${Math.round(120 * v)}, 70%, ${75 - 20 * v}%)`;
  let html = `<tr><th>${esc(rowsAxis || "")}${rowsAxis ? " \\ " : ""}${esc(colsAxis || "")}</th>` + colVals.map((v) => `<th>${esc(v ?? "")}</th>`).join("") + "</tr>";
  for (const rv of rowVals) {
    html += `<tr><th>${esc(rv ?? "")}</th>`;
    for (const cv of colVals) {
      const cell = st.cells.find((c) => (rowsAxis === null || value(c, rowsAxis) === rv) && (colsAxis === undefined || value(c, colsAxis) === cv));
      const v = cell ? (cell.success ?? cell.mean_test_acc) : null;
      html += cell ? `<td class="cell" data-run="${cell.run}" title="${esc(cell.label)}" style="background:${colour(v)}">${v === null ? "–" : (100 * v).toFixed(0) + "%"}</td>` : "<td></td>";
    }
    html += "</tr>";
  }
  $("#heat").innerHTML = html;
  $("#heat").addEventListener("click", (e) => { const td = e.target.closest("td.cell"); if (td) location.hash = `#run/${td.dataset.run}`; });
  const rows = st.cells.map((c) => ({ cell: c.index, label: c.label, seeds: c.seeds, success: c.success, mean_test_acc: c.mean_test_acc, spikes: c.spikes, run: c.run }));
  $("#cells").appendChild(table(["cell", "label", "seeds", "success", "mean_test_acc", "spikes"], rows, (r) => { location.hash = `#run/${r.run}`; }));
  st.figures.forEach((f) => $("#figs").insertAdjacentHTML("beforeend", `<img src="/files/${id}/${f}" alt="${esc(f)}">`));
}

route();
