// The swarm dashboard: polls this service's JSON and redraws. No framework, no chart library.
//
// GET v1/status          -> the tasks this site joined
// GET v1/dashboard/TASK  -> ledger records, this site's syncs, every site's metrics per round
"use strict";

const POLL_MS = 1500;
const RECENT_ROUNDS = 20;
// Colour-blind-friendly palette (Tableau 10); a site keeps its colour across tables and charts.
const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac"];
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_MARKERS = 80; // per series; beyond it the chart draws the line only

const sections = new Map(); // task -> {root, parts, choice}
let lastData = null; // the last poll's [status, results], to redraw at once when the user picks a metric

// ------------------------------------------------------------------ small helpers

/** An HTML element; strings become text nodes (never parsed as HTML). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false).map(String2Node));
  return node;
}

/** An SVG element. */
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined).map(String2Node));
  return node;
}

function String2Node(c) {
  return c instanceof Node ? c : document.createTextNode(String(c));
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
}

function ago(nowMs, thenMs) {
  if (thenMs === null || thenMs === undefined) return "—";
  const s = Math.max(0, nowMs - thenMs) / 1000;
  if (s < 120) return `${s.toFixed(1)} s ago`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function seconds(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "—";
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(2)} s` : `${(s / 60).toFixed(1)} min`;
}

function clock(ms) {
  if (!ms) return "—";
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  return new Date(ms).toLocaleTimeString([], opts);
}

function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** Axis labels with as many decimals as the tick step needs, so they line up. */
function tickFmt(v, step) {
  const decimals = (String(Number(step.toPrecision(6))).split(".")[1] || "").length;
  return Math.abs(v) >= 1e6 || (step < 1e-3) ? v.toExponential(1) : v.toFixed(decimals);
}

function short(sha) {
  return sha ? `${sha.slice(0, 12)}…` : "—";
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A column heading for a metric: "val_loss" -> "Val loss". */
function shortLabel(key) {
  if (!key) return "—";
  const text = key.replace(/^ads_val_/, "ADS val ").replace(/[_.:/-]+/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function metricLabel(key) {
  if (key === "ads_val_loss") return "Validation loss (merged model, adaptive-sync data)";
  if (key === "dp_epsilon") return "Differential privacy: epsilon spent";
  const words = (k) => k.replace(/[_.:/-]+/g, " ");
  if (key.startsWith("val_")) return `Validation ${words(key.slice(4))}`;
  return `Training ${words(key)}`;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    /* not JSON */
  }
  if (!resp.ok) {
    const d = body && body.detail;
    const msg = d && typeof d === "object" ? `${d.error}: ${d.message}` : `HTTP ${resp.status}`;
    throw new Error(msg);
  }
  return body;
}

// ------------------------------------------------------------------ polling

async function poll() {
  try {
    const status = await getJSON("v1/status");
    document.getElementById("site-name").textContent = status.site;
    document.getElementById("site-endpoint").textContent = status.endpoint;
    document.title = `Swarm · ${status.site}`;
    const names = Object.keys(status.tasks).sort();
    const results = await Promise.all(
      names.map((name) =>
        getJSON(`v1/dashboard/${encodeURIComponent(name)}?recent=${RECENT_ROUNDS}`).then(
          (data) => ({ name, data }),
          (err) => ({ name, error: err.message }),
        ),
      ),
    );
    renderAll(status, results);
    setLive(true, `live · updated ${clock(Date.now())}`);
  } catch (err) {
    setLive(false, `service not answering: ${err.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function setLive(ok, text) {
  const live = document.getElementById("live");
  live.dataset.state = ok ? "live" : "down";
  document.getElementById("live-text").textContent = text;
}

function redraw() {
  if (lastData) renderAll(...lastData);
}

function renderAll(status, results) {
  lastData = [status, results];
  const main = document.getElementById("tasks");
  main.dataset.taskCount = String(results.length);
  if (!results.length) {
    sections.clear();
    main.replaceChildren(
      el("p", { class: "empty" },
        `${status.site} has not joined a task yet. Start training with SwarmCallback and this page fills in.`),
    );
    return;
  }
  for (const name of [...sections.keys()]) {
    if (!results.some((r) => r.name === name)) sections.delete(name);
  }
  const roots = results.map((r) => {
    const sec = sections.get(r.name) || makeSection(r.name);
    sections.set(r.name, sec);
    if (r.error) renderError(sec, r.error);
    else renderTask(sec, r.data);
    return sec.root;
  });
  main.replaceChildren(...roots);
}

// ------------------------------------------------------------------ one task

function makeSection(name) {
  const parts = {
    head: el("div", { class: "task-head" }),
    banner: el("div"),
    kpis: el("div", { class: "kpis" }),
    sites: el("div", { class: "card" }),
    round: el("div", { class: "card" }),
    lossChart: el("div", { class: "card chart", "data-chart": "loss" }),
    metricChart: el("div", { class: "card chart", "data-chart": "metric" }),
    rounds: el("div", { class: "card" }),
  };
  const root = el(
    "section",
    { class: "task", "data-task": name },
    parts.head,
    parts.banner,
    parts.kpis,
    el("div", { class: "grid" }, parts.sites, parts.round),
    el("div", { class: "charts" }, parts.lossChart, parts.metricChart),
    parts.rounds,
  );
  return { root, parts, choice: { loss: null, metric: null } };
}

function renderError(sec, message) {
  sec.parts.banner.replaceChildren(el("div", { class: "banner" }, `Could not read this task: ${message}`));
}

function renderTask(sec, d) {
  const { parts } = sec;
  const task = d.task;
  const nodes = Object.keys(task.nodes).sort();
  const colors = Object.fromEntries(nodes.map((n, i) => [n, COLORS[i % COLORS.length]]));
  const keys = metricKeys(d.metrics);
  const lossKeys = keys.filter((k) => k.includes("loss"));
  const otherKeys = keys.filter((k) => !k.includes("loss"));
  sec.choice.loss = pick(sec.choice.loss, lossKeys, ["val_loss", "ads_val_loss", "loss"]);
  // With differential privacy and no training metrics shared, the epsilon spent is the curve to show.
  sec.choice.metric = pick(sec.choice.metric, otherKeys,
    [...otherKeys.filter((k) => k.startsWith("val_")), ...otherKeys.filter((k) => !k.startsWith("dp_")), "dp_epsilon"]);

  parts.banner.replaceChildren();
  renderHead(parts.head, d);
  renderKpis(parts.kpis, d);
  renderSites(parts.sites, d, colors, sec.choice);
  renderRound(parts.round, d, colors);
  renderChart(parts.lossChart, sec, "loss", lossKeys, d, colors,
    "No loss reported yet: sites report their Keras logs with each sync.");
  renderChart(parts.metricChart, sec, "metric", otherKeys, d, colors,
    "No metric besides the loss reported: compile the model with metrics=[…] to see one here.");
  renderRounds(parts.rounds, d, colors);
}

function metricKeys(metrics) {
  const keys = new Set();
  for (const site of Object.values(metrics)) {
    for (const r of site.rounds) for (const k of Object.keys(r.metrics)) keys.add(k);
  }
  return [...keys].sort();
}

function pick(current, keys, preferred) {
  if (current && keys.includes(current)) return current;
  return preferred.find((k) => keys.includes(k)) || keys[0] || null;
}

function renderHead(head, d) {
  const t = d.task;
  const s = t.spec;
  const statusPill = t.status === "open" ? el("span", { class: "pill ok big" }, "training")
    : el("span", { class: "pill big" }, "done");
  head.replaceChildren(
    el("h1", {}, el("span", { class: "kind" }, "Task"), t.task),
    statusPill,
    el("div", { class: "spec" },
      el("span", {}, "min peers ", el("b", {}, s.min_peers)),
      el("span", {}, "merge ", el("b", {}, s.merge_method)),
      el("span", {}, "quorum wait ", el("b", {}, `${s.quorum_wait_ms / 1000} s`)),
      el("span", {}, "leader timeout ", el("b", {}, `${s.leader_timeout_ms / 1000} s`)),
      el("span", {}, "max rounds ", el("b", {}, s.max_rounds || "∞")),
      el("span", { title: `model fingerprint ${s.fingerprint}` }, "model ", el("b", {}, `${s.tensors} tensors`),
        el("span", { class: "mono" }, ` ${s.fingerprint.slice(0, 8)}`)),
    ),
  );
}

function renderKpis(box, d) {
  const t = d.task;
  const r = d.round;
  const infos = Object.values(t.nodes);
  const count = (st) => infos.filter((i) => i.status === st).length;
  const durations = d.recent.filter((x) => x.published_ms).map((x) => x.published_ms - x.opened_ms);
  const latest = t.latest_merged;
  const roundState = { open: "collecting models", closed: "merging", done: "done" }[r.status] || r.status;
  const kpi = (k, v, s, attrs) => el("div", { class: "kpi", ...attrs }, el("div", { class: "k" }, k),
    el("div", { class: "v" }, v), el("div", { class: "s" }, s));
  box.replaceChildren(
    kpi("Current round", String(r.round), `${roundState} · ${ago(d.now_ms, r.opened_ms).replace(" ago", "")}`),
    kpi("Rounds completed", String(t.current_round), latest ? `latest merged: round ${latest.round}` : "none yet",
      { "data-completed-rounds": t.current_round }),
    kpi("Sites", String(infos.length),
      `${count("active")} training · ${count("finished")} finished · ${count("left")} left`,
      { "data-site-count": infos.length }),
    kpi("Round time", seconds(median(durations)), `median of the last ${durations.length} rounds`),
    kpi("Latest merged model", latest ? short(latest.sha256) : "—",
      latest ? `round ${latest.round}, held by ${latest.node}` : "no merge yet"),
  );
  box.lastChild.querySelector(".v").classList.add("mono");
}

function latestValue(site, key) {
  if (!site || !key) return null;
  for (let i = site.rounds.length - 1; i >= 0; i--) {
    const v = site.rounds[i].metrics[key];
    if (v !== undefined) return v;
  }
  return null;
}

function renderSites(card, d, colors, choice) {
  const t = d.task;
  const r = d.round;
  // A column of the epsilon each site has spent, once any site trains with differential privacy.
  const dp = Object.values(d.metrics).some((m) => latestValue(m, "dp_epsilon") !== null);
  const deltas = [...new Set(Object.values(d.metrics).map((m) => latestValue(m, "dp_delta")).filter((v) => v !== null))];
  const metricColumn = !(dp && choice.metric === "dp_epsilon"); // the epsilon column shows it already
  const atDelta = deltas.length === 1 ? ` at delta ${Number(deltas[0]).toExponential()}` : "";
  const rows = Object.keys(t.nodes).sort().map((node) => {
    const info = t.nodes[node];
    const m = d.metrics[node];
    const statusPill = { active: ["ok", "training"], finished: ["info", "finished, contributing"], left: ["", "left"] }[
      info.status] || ["", info.status];
    const sub = r.submissions[node];
    let roundCell;
    if (sub) {
      roundCell = el("span", { class: "pill ok" }, "✓ submitted");
    } else if (info.status === "left") {
      roundCell = el("span", { class: "muted" }, "—");
    } else if (r.status === "open") {
      roundCell = el("span", { class: "pill wait" }, "awaited");
    } else {
      roundCell = el("span", { class: "muted" }, "not in this round");
    }
    if (r.status !== "open" && r.contributors.length && r.contributors[r.leader_index] === node) {
      roundCell = el("span", {}, roundCell, " ", el("span", { class: "pill info" }, "leader"));
    }
    const unreachable = m && !m.reachable
      ? el("span", { class: "pill bad", title: m.error || "" }, "unreachable") : null;
    return el("tr", { "data-site": node, "data-status": info.status, "data-reachable": m ? String(m.reachable) : "" },
      el("td", {}, el("div", { class: "site-cell" },
        el("span", { class: "swatch", style: `background:${colors[node]}` }), node,
        node === d.site ? el("span", { class: "me" }, "this site") : null, unreachable)),
      el("td", {}, el("span", { class: `pill ${statusPill[0]}` }, statusPill[1])),
      el("td", { title: clock(info.last_seen_ms) }, ago(d.now_ms, info.last_seen_ms)),
      el("td", {}, roundCell),
      el("td", { class: "num" }, fmt(latestValue(m, choice.loss))),
      metricColumn ? el("td", { class: "num" }, fmt(latestValue(m, choice.metric))) : null,
      dp ? el("td", { class: "num", "data-dp-epsilon": latestValue(m, "dp_epsilon") ?? "" },
        fmt(latestValue(m, "dp_epsilon"))) : null,
    );
  });
  card.replaceChildren(
    el("h2", {}, "Sites", el("span", { class: "sub" }, `${rows.length} registered`)),
    el("div", { class: "table-wrap" }, el("table", { "data-sites": rows.length },
      el("thead", {}, el("tr", {},
        el("th", {}, "Site"), el("th", {}, "Status"), el("th", {}, "Last seen"), el("th", {}, `Round ${r.round}`),
        el("th", { class: "num", title: `latest ${choice.loss || "loss"} reported` }, shortLabel(choice.loss)),
        metricColumn ? el("th", { class: "num", title: `latest ${choice.metric || "metric"} reported` },
          shortLabel(choice.metric)) : null,
        dp ? el("th", { class: "num", title: `differential privacy: the epsilon the site has spent${atDelta}` },
          "Epsilon") : null)),
      el("tbody", {}, rows))),
    el("p", { class: "note" }, "Last seen: the site's latest transaction on the ledger. ",
      `${shortLabel(choice.loss)}${metricColumn ? ` and ${shortLabel(choice.metric)}` : ""}: the latest values the `
        + "site reported with a sync.",
      dp ? ` Epsilon: the differential privacy the site has spent so far${atDelta}.` : ""),
  );
}

function renderRound(card, d, colors) {
  const t = d.task;
  const r = d.round;
  const now = d.now_ms;
  const expected = Object.keys(t.nodes).filter((n) => t.nodes[n].status !== "left");
  const submitted = Object.keys(r.submissions).sort();
  const awaited = expected.filter((n) => !r.submissions[n]).sort();
  const swatch = (n) => el("span", { class: "swatch", style: `background:${colors[n] || "#999"}` });
  const statusPill = {
    open: el("span", { class: "pill wait" }, "collecting models"),
    closed: el("span", { class: "pill info" }, "merging"),
    done: el("span", { class: "pill ok" }, "done"),
  }[r.status] || el("span", { class: "pill" }, r.status);
  const total = Math.max(expected.length, 1);
  const body = [
    el("div", { class: "round-top" }, el("span", { class: "n" }, `Round ${r.round}`), statusPill,
      el("span", { class: "muted" }, `opened ${ago(now, r.opened_ms)}`)),
  ];
  if (r.status === "open") {
    body.push(
      el("div", { class: "muted" },
        `${submitted.length} of ${expected.length} sites submitted · min peers ${t.spec.min_peers}`),
      el("div", { class: "progress" }, el("div", { style: `width:${(100 * submitted.length) / total}%` })),
      el("div", { class: "row-label" }, "Submitted"),
      el("div", { class: "chips", "data-submitted": submitted.length },
        submitted.length ? submitted.map((n) => el("span", { class: "chip ok" }, swatch(n), n,
          el("span", { class: "muted" }, `weight ${r.submissions[n].weight} · ${ago(now, r.submissions[n].ts_ms)}`)))
          : el("span", { class: "muted" }, "nobody yet")),
      el("div", { class: "row-label" }, "Awaited"),
      el("div", { class: "chips", "data-awaited": awaited.length },
        awaited.length ? awaited.map((n) => el("span", { class: "chip wait" }, swatch(n), n,
          el("span", { class: "muted" }, `last seen ${ago(now, t.nodes[n].last_seen_ms)}`)))
          : el("span", { class: "muted" }, "nobody")),
    );
    if (d.close) {
      body.push(d.close.closable
        ? el("div", { class: "reason ok" }, "Can close now: the next site to look closes it.")
        : el("div", { class: "reason wait" }, `Cannot close yet: ${d.close.why}`));
    }
  } else if (r.status === "closed") {
    const leader = r.contributors[r.leader_index];
    const left = r.leader_deadline_ms - now;
    const timeout = t.spec.leader_timeout_ms;
    const last = r.leader_index + 1 === r.contributors.length; // no one left to fail over to
    body.push(
      el("div", {}, "Leader ", el("strong", {}, leader), ` merges ${r.contributors.length} models`,
        r.failovers ? el("span", { class: "pill bad" }, `${r.failovers} failovers`) : null),
      el("div", { class: left >= 0 ? "progress info" : "progress late" },
        el("div", { style: `width:${Math.min(100, Math.max(0, 100 * (1 - left / timeout)))}%` })),
      el("div", { class: left >= 0 ? "muted" : "reason bad" }, left >= 0
        ? `deadline in ${(left / 1000).toFixed(1)} s, then ${last ? "the round is abandoned" : "the next contributor takes over"}`
        : `deadline passed ${(-left / 1000).toFixed(1)} s ago: ${last ? "abandoning" : "failover"} due`),
      el("div", { class: "row-label" }, "Contributors, in leader order"),
      el("div", { class: "chips" }, r.contributors.map((n, i) => el("span",
        { class: i === r.leader_index ? "chip ok" : "chip" }, swatch(n), `${i + 1}. ${n}`))),
    );
  }
  for (const job of d.syncs) {
    body.push(el("div", { class: "own-sync", title: job.waiting_for },
      `This site's sync: ${job.phase} for ${job.waiting_s} s`));
  }
  card.replaceChildren(el("h2", {}, "Current round"), ...body);
}

// ------------------------------------------------------------------ charts

function niceTicks(lo, hi, count) {
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  ticks.step = step;
  return ticks;
}

function renderChart(card, sec, which, keys, d, colors, emptyText) {
  const key = sec.choice[which];
  // The heading and select survive redraws, so an open drop-down is not closed under the user.
  if (!card.chartParts) {
    const select = el("select", { "aria-label": `${which} to chart` });
    select.addEventListener("change", () => {
      sec.choice[which] = select.value;
      redraw();
    });
    card.chartParts = { select, heading: el("span"), plot: el("div"), legend: el("div", { class: "legend" }) };
    const p = card.chartParts;
    card.replaceChildren(el("h2", {}, p.heading, select), p.plot, p.legend);
  }
  const { select, heading, plot, legend } = card.chartParts;
  if ([...select.options].map((o) => o.value).join("|") !== keys.join("|")) {
    select.replaceChildren(...keys.map((k) => el("option", { value: k }, k)));
  }
  select.hidden = keys.length < 2;
  if (key) select.value = key;
  const fallback = which === "loss" ? "Loss per round" : "Metric per round";
  heading.textContent = key ? `${metricLabel(key)} per round` : fallback;

  const series = Object.keys(d.metrics).sort().map((site) => ({
    site,
    reachable: d.metrics[site].reachable,
    points: d.metrics[site].rounds.filter((r) => key && r.metrics[key] !== undefined)
      .map((r) => [r.round, r.metrics[key]]),
  }));
  const all = series.flatMap((s) => s.points);
  const W = 560;
  const H = 250;
  const m = { l: 56, r: 14, t: 12, b: 38 };
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": heading.textContent,
    "data-metric": key || "", "data-points": all.length, "data-series": series.filter((s) => s.points.length).length,
  });
  if (!all.length) {
    root.append(svg("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "#fafbfc",
      stroke: "#edf0f4" }));
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "no-data" }, emptyText));
  } else {
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    let x0 = Math.min(...xs);
    let x1 = Math.max(...xs);
    if (x0 === x1) {
      x0 -= 1;
      x1 += 1;
    }
    const yt = niceTicks(Math.min(...ys), Math.max(...ys), 5);
    const y0 = yt[0];
    const y1 = yt[yt.length - 1];
    const inset = 10; // keeps the first and last points off the axes
    const px = (x) => m.l + inset + ((x - x0) / (x1 - x0)) * (W - m.l - m.r - 2 * inset);
    const py = (y) => m.t + inset / 2 + (1 - (y - y0) / (y1 - y0)) * (H - m.t - m.b - inset);
    for (const v of yt) {
      root.append(svg("line", { class: "grid-line", x1: m.l, x2: W - m.r, y1: py(v), y2: py(v) }));
      root.append(svg("text", { class: "tick", x: m.l - 6, y: py(v) + 4, "text-anchor": "end" }, tickFmt(v, yt.step)));
    }
    const xStep = niceTicks(x0, x1, 8).step;
    const roundStep = Number.isInteger(xStep) && xStep >= 1 ? xStep : Math.max(1, Math.ceil(xStep));
    for (let x = Math.ceil(x0 / roundStep) * roundStep; x <= x1; x += roundStep) {
      root.append(svg("line", { class: "axis", x1: px(x), x2: px(x), y1: H - m.b, y2: H - m.b + 4 }));
      root.append(svg("text", { class: "tick", x: px(x), y: H - m.b + 16, "text-anchor": "middle" }, x));
    }
    root.append(svg("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    root.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
    const mid = (m.l + W - m.r) / 2;
    root.append(svg("text", { class: "axis-title", x: mid, y: H - 4, "text-anchor": "middle" }, "round"));
    for (const s of series) {
      if (!s.points.length) continue;
      const path = s.points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
      root.append(svg("path", { class: s.reachable ? "series" : "series stale", d: path, stroke: colors[s.site],
        "data-site": s.site }));
      if (s.points.length > MAX_MARKERS) continue; // a dense line reads better without markers
      for (const [x, y] of s.points) {
        root.append(svg("circle", { class: "pt", cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: 3.5,
          fill: colors[s.site], "data-site": s.site, "data-round": x, "data-value": y },
          svg("title", {}, `${s.site}, round ${x}: ${key} = ${fmt(y)}${s.reachable ? "" : " (last known)"}`)));
      }
    }
  }
  plot.replaceChildren(root);
  legend.replaceChildren(...series.map((s) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    let value = fmt(last);
    if (!s.reachable) value = last === null ? "unreachable" : `unreachable, last known ${fmt(last)}`;
    const attrs = s.reachable ? {} : { class: "off", title: "this site's service does not answer" };
    return el("span", attrs, el("span", { class: "swatch", style: `background:${colors[s.site]}` }), s.site,
      el("span", { class: "muted" }, value));
  }));
}

// ------------------------------------------------------------------ rounds

function renderRounds(card, d, colors) {
  const rows = d.recent.map((r) => {
    const leader = r.published_by
      || (r.contributors.length && r.status !== "abandoned" ? r.contributors[r.leader_index] : null);
    return el("tr", { "data-round": r.round, "data-status": r.status },
      el("td", { class: "num" }, String(r.round)),
      el("td", {}, r.status === "done" ? el("span", { class: "pill ok" }, "merged")
        : el("span", { class: r.status === "abandoned" ? "pill bad" : "pill wait",
          title: r.status === "abandoned" ? "no contributor could merge it; the next round took its place" : "" },
        r.status)),
      el("td", {}, el("div", { class: "chips" }, r.contributors.map((n) => el("span", { class: "chip" },
        el("span", { class: "swatch", style: `background:${colors[n] || "#999"}` }), n)))),
      el("td", {}, leader || "—", r.failovers ? el("span", { class: "pill bad", style: "margin-left:6px" },
        `${r.failovers} failover${r.failovers > 1 ? "s" : ""}`) : null),
      el("td", { class: "mono", title: r.merged_sha256 || "" }, short(r.merged_sha256)),
      el("td", { class: "num" }, seconds(r.published_ms ? r.published_ms - r.opened_ms : null)),
      el("td", { class: "num" }, seconds(r.published_ms && r.closed_ms ? r.published_ms - r.closed_ms : null)),
      el("td", { class: "num" }, clock(r.published_ms)),
    );
  });
  card.replaceChildren(
    el("h2", {}, "Rounds", el("span", { class: "sub" }, rows.length ? `the last ${rows.length}, newest first`
      : "none completed yet")),
    el("div", { class: "table-wrap" }, el("table", { "data-rounds": rows.length },
      el("thead", {}, el("tr", {},
        el("th", { class: "num" }, "Round"), el("th", {}, "Status"), el("th", {}, "Contributors"),
        el("th", {}, "Leader"),
        el("th", {}, "Merged model (sha256)"), el("th", { class: "num", title: "opened to published" }, "Duration"),
        el("th", { class: "num", title: "closed to published: the leader's fetch, merge and publish" }, "Merge"),
        el("th", { class: "num" }, "Published"))),
      el("tbody", {}, rows.length ? rows
        : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No round has been merged yet."))))),
  );
}

poll();
