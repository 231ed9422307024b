// The participant page: consent, one screen at a time, answers by key, click or tap. The server
// keeps the state; the page only remembers the participant id (address and localStorage).
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, screen = null, shownAt = 0, busy = false;

function participantId(studyId) {
  const params = new URLSearchParams(location.search);
  const key = "coemogen-study-" + studyId;
  let pid = ["PROLIFIC_PID", "participant", "workerId", "pid"].map((k) => params.get(k)).find((v) => v);
  pid = pid || localStorage.getItem(key);
  if (!pid) {
    const bytes = crypto.getRandomValues(new Uint8Array(9));
    pid = "p-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  localStorage.setItem(key, pid);
  if (!params.get("PROLIFIC_PID") && params.get("participant") !== pid) {
    params.set("participant", pid);  // a reload or a copied address continues the same participant
    history.replaceState(null, "", location.pathname + "?" + params.toString());
  }
  return pid;
}

async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function show(section) {
  for (const id of ["consent", "trial", "done"]) $(id).hidden = id !== section;
}

function render(state) {
  $("error").textContent = "";
  if (state.done) {
    $("code").textContent = state.code;
    show("done");
    return;
  }
  screen = state;
  $("bar").style.width = (100 * state.step / state.total) + "%";
  $("progress").setAttribute("aria-valuemax", state.total);
  $("progress").setAttribute("aria-valuenow", state.step);
  $("counter").textContent = "Question " + (state.step + 1) + " of " + state.total;
  $("question").textContent = state.question;
  const choices = $("choices");
  choices.replaceChildren();
  state.images.forEach((image, i) => {
    const button = document.createElement("div");
    button.className = "choice";
    button.tabIndex = 0;
    button.dataset.choice = image.id;
    button.setAttribute("role", "button");
    const key = state.images.length === 2 ? (i === 0 ? "← or 1" : "→ or 2") : String(i + 1);
    button.setAttribute("aria-label", "image " + (i + 1));
    const img = document.createElement("img");
    img.src = image.url;
    img.alt = "image " + (i + 1);
    const label = document.createElement("span");
    label.textContent = key;
    button.append(img, label);
    button.addEventListener("click", () => choose(i));
    choices.append(button);
  });
  show("trial");
  shownAt = performance.now();
}

async function choose(index) {
  if (busy || !screen || index < 0 || index >= screen.images.length) return;
  busy = true;
  try {
    render(await post("api/answer", {participant: info.participant, step: screen.step, trial: screen.trial,
                                     choice: screen.images[index].id,
                                     rt_ms: Math.min(3600000, Math.round(performance.now() - shownAt))}));
  } catch (err) {
    $("error").textContent = err.message + " (reload the page to continue)";
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (!screen || $("trial").hidden) return;
  const keys = {ArrowLeft: 0, ArrowRight: 1};
  const index = event.key in keys ? keys[event.key] : parseInt(event.key, 10) - 1;
  if (!Number.isNaN(index)) {
    event.preventDefault();
    choose(index);
  }
});

async function main() {
  try {
    const study = await (await fetch("api/study")).json();
    document.title = $("title").textContent = study.title;
    const state = await post("api/start", {participant: participantId(study.study)});
    info = {participant: state.participant};
    if (state.done || state.answered > 0) return render(state);  // consent was given before
    $("consent-text").textContent = study.consent;
    $("instructions").textContent = study.instructions;
    $("agree").addEventListener("change", () => { $("begin").disabled = !$("agree").checked; });
    $("begin").addEventListener("click", () => render(state));
    show("consent");
  } catch (err) {
    $("error").textContent = "The study could not start: " + err.message;
  }
}
main();
