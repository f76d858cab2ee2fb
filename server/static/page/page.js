// The page for people: upload a video, see its labels (and timeline) and its correlation field.
// Talks only to this server's API; no framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#0b62d6", "#d93025", "#188038", "#f29900", "#9334e6", "#00838f", "#5f6368", "#e52592"];
const PREDICT_OPTIONS = ["top_k", "clips", "crops", "sampling", "timeline", "window_s"];
const FIELD_OPTIONS = ["stage", "tau", "soft"];
let fieldStages = [];  // [{stage, temporal_range}], from the model card

function showError(answer, where = $("error")) {
  const error = answer && answer.error ? answer.error : { code: "network_error", message: String(answer) };
  where.textContent = `${error.message} (${error.code})`;
  where.hidden = false;
}

async function call(path, form) {
  const response = await fetch(path, { method: "POST", body: form });
  if (response.ok) return response;
  let answer;
  try { answer = await response.json(); } catch { answer = { error: { code: `http_${response.status}`, message: response.statusText } }; }
  throw answer;
}

function formFor(names) {
  const source = new FormData($("upload"));
  const form = new FormData();
  form.append("file", $("file").files[0]);
  for (const name of names) {
    const input = $("upload").elements[name];
    if (input.type === "checkbox") { if (input.checked) form.append(name, "true"); continue; }
    const value = source.get(name);
    if (value !== null && value !== "") form.append(name, value);
  }
  return form;
}

function showLabels(answer) {
  const video = answer.video;
  $("summary").textContent = `${answer.model}: ${video.duration_s.toFixed(1)} s, ${video.frames} frames, ` +
    `${video.width}×${video.height}; ${answer.views.total} view(s); ${answer.timings_ms.total.toFixed(0)} ms`;
  const list = $("labels");
  list.replaceChildren();
  for (const p of answer.predictions) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = p.label;
    name.className = "label";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p.score).toFixed(1)}%`;
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", String(p.score));
    bar.setAttribute("aria-label", p.label);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = p.score.toFixed(3);
    item.append(name, bar, score);
    list.append(item);
  }
  showTimeline(answer.timeline, answer.predictions.map((p) => p.label));
  $("results").hidden = false;
}

function showTimeline(timeline, labels) {
  const box = $("timeline-box");
  if (!timeline || timeline.length === 0) { box.hidden = true; return; }
  const svg = $("timeline");
  const legend = $("timeline-legend");
  svg.replaceChildren();
  legend.replaceChildren();
  const [w, h, pad] = [640, 220, 24];
  const end = timeline[timeline.length - 1].end_s || 1;
  const ns = "http://www.w3.org/2000/svg";
  const text = (x, y, content, anchor = "start") => {
    const node = document.createElementNS(ns, "text");
    node.setAttribute("x", String(x));
    node.setAttribute("y", String(y));
    node.setAttribute("font-size", "11");
    node.setAttribute("text-anchor", anchor);
    node.textContent = content;
    svg.append(node);
  };
  const axis = document.createElementNS(ns, "polyline");
  axis.setAttribute("points", `${pad},${pad} ${pad},${h - pad} ${w - pad},${h - pad}`);
  axis.setAttribute("fill", "none");
  axis.setAttribute("stroke", "#8a94a3");
  svg.append(axis);
  text(pad - 4, pad + 4, "1", "end");
  text(pad - 4, h - pad, "0", "end");
  text(pad, h - 8, "0 s");
  text(w - pad, h - 8, `${end.toFixed(1)} s`, "end");
  labels.forEach((label, i) => {
    const points = timeline.map((window) => {
      const hit = window.predictions.find((p) => p.label === label);
      const x = pad + ((window.start_s + window.end_s) / 2 / end) * (w - 2 * pad);
      const y = h - pad - (hit ? hit.score : 0) * (h - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLOURS[i % COLOURS.length]);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.background = COLOURS[i % COLOURS.length];
    item.append(swatch, label);
    legend.append(item);
  });
  box.hidden = false;
}

async function showField() {
  const section = $("field");
  const picture = $("field-picture");
  const problem = $("field-error");
  problem.hidden = true;
  if (picture.src) URL.revokeObjectURL(picture.src);
  picture.removeAttribute("src");
  picture.hidden = true;
  $("field-caption").textContent = "";
  if (fieldStages.length === 0) { section.hidden = true; return; }
  const form = formFor(FIELD_OPTIONS);
  const tau = form.get("tau");
  try {
    const response = await call("/v1/visualize", form);
    picture.src = URL.createObjectURL(await response.blob());
    picture.hidden = false;
    const stage = response.headers.get("X-DCF-Stage");
    picture.alt = `the centre clip's frames as the model saw them, and stage ${stage}'s best-matching displacements for tau ${tau}`;
    $("field-caption").textContent = `Top: the frames the model saw (centre clip, centre crop). Bottom: stage ${stage}'s ` +
      `best match for τ = ${tau}, full colour = ${response.headers.get("X-DCF-Full-Colour-Px")} px.`;
  } catch (answer) {
    showError(answer, problem);
  }
  section.hidden = false;
}

async function submit(event) {
  event.preventDefault();
  $("error").hidden = true;
  if ($("file").files.length === 0) { showError({ error: { code: "missing_file", message: "choose a video first" } }); return; }
  const button = $("go");
  button.disabled = true;
  button.textContent = "Working…";
  try {
    const response = await call("/v1/predict", formFor(PREDICT_OPTIONS));
    showLabels(await response.json());
    await showField();
  } catch (answer) {
    $("results").hidden = true;
    $("field").hidden = true;
    showError(answer);
  } finally {
    button.disabled = false;
    button.textContent = "Label the video";
  }
}

function fillTau() {
  const stage = fieldStages.find((s) => String(s.stage) === $("stage").value);
  const tau = $("tau");
  tau.replaceChildren();
  if (!stage) return;
  for (let t = -stage.temporal_range; t <= stage.temporal_range; t++) {
    if (t === 0) continue;
    tau.append(new Option(t > 0 ? `+${t}` : String(t), String(t), false, t === 1));
  }
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models");
    const answer = await response.json();
    if (!response.ok) throw answer;
    const card = answer.models[0];
    const spec = card.input_spec;
    $("model-card").textContent = `${card.name} (${card.architecture}) on ${card.backend}/${card.device}, ` +
      `${card.classes.length} classes; clips of ${spec.num_frames} frames at ${spec.crop_size}×${spec.crop_size}.`;
    $("upload").elements.top_k.max = String(card.classes.length);
    fieldStages = card.correlation_stages;
    const stage = $("stage");
    for (const s of fieldStages) stage.append(new Option(`stage ${s.stage}`, String(s.stage)));
    $("field-options").hidden = fieldStages.length === 0;
    fillTau();
  } catch (answer) {
    showError(answer);
  }
}

function dropping(event) {
  event.preventDefault();
  $("drop").classList.toggle("over", event.type === "dragover");
  if (event.type === "drop" && event.dataTransfer.files.length) {
    $("file").files = event.dataTransfer.files;
    chosen();
  }
}

function chosen() {
  const file = $("file").files[0];
  $("drop-text").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} KiB)` : "Choose a video, or drop one here";
}

$("upload").addEventListener("submit", submit);
$("stage").addEventListener("change", fillTau);
$("file").addEventListener("change", chosen);
for (const type of ["dragover", "dragleave", "drop"]) $("drop").addEventListener(type, dropping);
loadModel();
