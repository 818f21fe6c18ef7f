// Resident page: sign in, list my doors, open one, show the confirmed outcome.
// Everything comes from the REST API; the token lives in sessionStorage (gone with the tab).
"use strict";

const TERMINAL = new Set(["opened", "released_not_opened", "rejected", "failed", "expired"]);
const OUTCOME_TEXT = {
  queued: ["Sending…", ""],
  sent: ["Waiting for the door…", ""],
  acknowledged: ["Unlocked — waiting for the door to open…", ""],
  opened: ["Opened", "ok"],
  released_not_opened: ["Released, but nobody opened the door", "warn"],
  rejected: ["Refused by the door's gateway", "bad"],
  failed: ["The door could not be unlocked", "bad"],
  expired: ["No answer from the door in time", "bad"],
};

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("courtyard.token");

async function api(method, path, body, headers = {}) {
  const h = { Accept: "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (res.status === 401) { signOut(); }
  return { status: res.status, data };
}

function show(view) {
  $("login-view").hidden = view !== "login";
  $("doors-view").hidden = view !== "doors";
  $("logout").hidden = view !== "doors";
}

function signOut() {
  token = null;
  sessionStorage.removeItem("courtyard.token");
  show("login");
}

function setOutcome(el, status, extra) {
  const [text, cls] = OUTCOME_TEXT[status] || [status, ""];
  el.textContent = extra ? `${text} (${extra})` : text;
  el.className = `outcome ${cls}`;
  el.dataset.status = status;
}

async function openDoor(door, button, outcome) {
  button.disabled = true;
  setOutcome(outcome, "queued");
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const res = await api("POST", `/api/v1/doors/${encodeURIComponent(door.id)}/unlock`, {}, { "Idempotency-Key": key });
  if (res.status !== 202) {
    outcome.textContent = (res.data && res.data.error && res.data.error.message) || `Error ${res.status}`;
    outcome.className = "outcome bad";
    button.disabled = false;
    return;
  }
  let status = res.data.status;
  setOutcome(outcome, status);
  const id = res.data.command_id;
  const deadline = Date.now() + 90_000;
  while (!TERMINAL.has(status) && Date.now() < deadline) {
    const r = await api("GET", `/api/v1/commands/${encodeURIComponent(id)}?wait=20`);
    if (r.status !== 200) break;
    status = r.data.status;
    setOutcome(outcome, status, TERMINAL.has(status) ? r.data.reason : undefined);
  }
  button.disabled = false;
}

async function loadDoors() {
  const res = await api("GET", "/api/v1/doors");
  if (res.status !== 200) return;
  const list = $("doors");
  list.replaceChildren();
  $("doors-empty").hidden = res.data.doors.length > 0;
  for (const door of res.data.doors) {
    const row = $("door-row").content.firstElementChild.cloneNode(true);
    row.dataset.doorId = door.id;
    row.querySelector(".door-name").textContent = door.name;
    row.querySelector(".door-building").textContent = door.building || "";
    const button = row.querySelector(".open");
    button.setAttribute("aria-label", `Open ${door.name}`);
    const outcome = row.querySelector(".outcome");
    button.addEventListener("click", () => openDoor(door, button, outcome));
    list.appendChild(row);
  }
  show("doors");
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  const res = await api("POST", "/api/v1/sessions", { login: $("login").value, password: $("password").value });
  if (res.status === 201 && res.data && res.data.token) {
    token = res.data.token;
    sessionStorage.setItem("courtyard.token", token);
    $("password").value = "";
    await loadDoors();
  } else if (res.status === 429) {
    $("login-error").textContent = "Too many attempts. Try again later.";
  } else {
    $("login-error").textContent = "Wrong login or password.";
  }
});

$("logout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/sessions/current");
  signOut();
});

if (token) { loadDoors(); } else { show("login"); }
