// Resident page: sign in, open my doors, collect my parcels, read my notifications.
// Everything comes from the REST API (common.js); the token lives in sessionStorage.
"use strict";

const { $, api } = cy;

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
const PICKUP_TEXT = {
  queued: "Sending…",
  sent: "Waiting for the locker…",
  acknowledged: "The locker is opening the compartment…",
};
const PARCEL_STATE = {
  requested: "Being delivered",
  empty: "Being delivered",
  waiting: "Waiting for you",
  picked_up: "Picked up",
  retrieved: "Taken back by the courier",
  cancelled: "Delivery cancelled",
  failed: "Delivery failed",
};

function show(view) {
  $("login-view").hidden = view !== "login";
  for (const id of ["doors-view", "parcels-view", "notes-view"]) $(id).hidden = view !== "home";
  $("logout").hidden = view === "login";
}

cy.onSignedOut = () => {
  for (const url of qrUrls) URL.revokeObjectURL(url);
  qrUrls.clear();
  $("parcels").replaceChildren();
  $("notes").replaceChildren();
  show("login");
};

function setOutcome(el, status, extra) {
  const [text, cls] = OUTCOME_TEXT[status] || [status, ""];
  el.textContent = extra ? `${text} (${extra})` : text;
  el.className = `outcome ${cls}`;
  el.dataset.status = status;
}

function say(el, text, cls = "", status = "") {
  el.textContent = text;
  el.className = `outcome ${cls}`;
  if (status) el.dataset.status = status;
  else delete el.dataset.status;
}

// -- doors ------------------------------------------------------------------------------------

async function openDoor(door, button, outcome) {
  button.disabled = true;
  setOutcome(outcome, "queued");
  const res = await api("POST", `/api/v1/doors/${encodeURIComponent(door.id)}/unlock`, {}, { "Idempotency-Key": cy.newKey() });
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
  if (res.status !== 200) return false;
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
  return true;
}

// -- parcels ----------------------------------------------------------------------------------

const qrUrls = new Set();

function where(p) {
  return p.compartment ? `${p.bank_name} · compartment ${p.compartment}` : p.bank_name;
}

function feeLine(p) {
  if (p.state === "waiting" && p.fee_due_cents) return `Storage fee if collected now: ${cy.money(p.fee_due_cents)}`;
  if (p.state === "picked_up" && p.fee_cents) return `Storage fee owed: ${cy.money(p.fee_cents)}`;
  return "";
}

// Fill a parcel row's text and buttons (its outcome line is left alone).
function renderParcel(row, p) {
  row.dataset.parcelId = p.id;
  row.dataset.state = p.state;
  row.querySelector(".parcel-where").textContent = where(p);
  const meta = [];
  if (p.deposited_at) meta.push(`Arrived ${cy.time(p.deposited_at)}`);
  if (p.company) meta.push(p.company);
  if (p.picked_up_at && p.state !== "waiting") meta.push(`${PARCEL_STATE[p.state]} ${cy.time(p.picked_up_at)}`);
  row.querySelector(".parcel-meta").textContent = meta.join(" · ");
  const state = row.querySelector(".parcel-state");
  state.textContent = PARCEL_STATE[p.state] || p.state;
  state.className = `parcel-state state-${p.state}`;
  const fee = row.querySelector(".parcel-fee");
  fee.textContent = feeLine(p);
  fee.hidden = !fee.textContent;
  const waiting = p.state === "waiting";
  row.querySelector(".actions").hidden = !waiting;
  if (!waiting) hideCode(row);
  countWaiting();
}

function countWaiting() {
  const waiting = $("parcels").querySelectorAll('li.parcel[data-state="waiting"]').length;
  $("parcels-count").textContent = waiting ? `${waiting} waiting` : "";
}

function hideCode(row) {
  const box = row.querySelector(".code");
  const img = box.querySelector("img");
  if (img.src) { URL.revokeObjectURL(img.src); qrUrls.delete(img.src); img.removeAttribute("src"); }
  box.querySelector(".code-digits").textContent = "";
  box.hidden = true;
  const button = row.querySelector(".show-code");
  button.textContent = "Show code";
  button.setAttribute("aria-expanded", "false");
}

async function toggleCode(row, p, button, outcome) {
  const box = row.querySelector(".code");
  if (!box.hidden) { hideCode(row); return; }
  button.disabled = true;
  say(outcome, "");
  const res = await api("GET", `/api/v1/parcels/${p.id}/code`);
  if (res.status !== 200) {
    button.disabled = false;
    say(outcome, cy.errorText(res, { wrong_state: "This parcel is no longer waiting" }), "bad");
    if (res.status === 409) refreshParcel(row, p.id);
    return;
  }
  box.querySelector(".code-digits").textContent = res.data.code;
  box.querySelector(".code-expiry").textContent = `QR valid until ${cy.time(res.data.expires_at)}`;
  box.hidden = false;
  button.textContent = "Hide code";
  button.setAttribute("aria-expanded", "true");
  button.disabled = false;
  const url = await cy.imageUrl(`/api/v1/parcels/${p.id}/qr.png`);
  const img = box.querySelector("img");
  if (url && !box.hidden) {
    qrUrls.add(url);
    img.src = url;
  } else if (url) {
    URL.revokeObjectURL(url);
  } else {
    say(outcome, "The QR code could not be loaded; the digits still work", "warn");
  }
}

function askPickup(row, p, outcome) {
  const confirm = row.querySelector(".confirm");
  const fee = p.fee_due_cents || 0;
  confirm.querySelector(".confirm-text").textContent = fee > 0
    ? `Open ${where(p)} now? A storage fee of ${cy.money(fee)} will be recorded as owed.`
    : `Open ${where(p)} now? Only do this at the locker: anyone there can take the parcel.`;
  confirm.hidden = false;
  row.querySelector(".actions").hidden = true;
  say(outcome, "");
  confirm.querySelector(".confirm-yes").focus();
}

async function pickup(row, p, outcome) {
  row.querySelector(".confirm").hidden = true;
  say(outcome, "Sending…", "", "sending");
  const res = await api("POST", `/api/v1/parcels/${p.id}/pickup`, undefined, { "Idempotency-Key": cy.newKey() });
  if (res.status !== 202) {
    say(outcome, cy.errorText(res, { wrong_state: "This parcel is no longer waiting" }), "bad", "error");
    await refreshParcel(row, p.id);
    return;
  }
  const fee = res.data.fee_cents;
  const final = await cy.followCommand(res.data.command.command_id, (status) => {
    if (PICKUP_TEXT[status]) say(outcome, PICKUP_TEXT[status], "", status);
  });
  if (final === null) {
    say(outcome, "No answer yet. Check the locker, then refresh", "warn", "unknown");
  } else if (final.status === "opened") {
    say(outcome, fee > 0 ? `Opened — storage fee owed ${cy.money(fee)}` : "Opened", "ok", "opened");
  } else {
    say(outcome, cy.reasonText(final.reason || final.status), "bad", final.status);
  }
  // An open is reported with the pickup (usually in the same batch): wait briefly for it.
  const opened = final !== null && final.status === "opened";
  const deadline = Date.now() + 15_000;
  for (;;) {
    const current = await refreshParcel(row, p.id);
    if (!opened || !current || current.state !== "waiting" || Date.now() > deadline) break;
    await cy.pause(1000);
  }
}

async function refreshParcel(row, id) {
  const r = await api("GET", `/api/v1/parcels/${id}`);
  if (r.status !== 200) return null;
  renderParcel(row, r.data);
  return r.data;
}

function parcelRow(p) {
  const row = $("parcel-row").content.firstElementChild.cloneNode(true);
  renderParcel(row, p);
  const outcome = row.querySelector(".outcome");
  const showCode = row.querySelector(".show-code");
  const open = row.querySelector(".open-remote");
  // The buttons say what they do; which parcel they act on is the row's title.
  const title = row.querySelector(".parcel-where");
  title.id = `parcel-${p.id}`;
  for (const button of [showCode, open]) button.setAttribute("aria-describedby", title.id);
  let current = p;
  const latest = async () => (await refreshParcel(row, p.id)) || current;
  showCode.addEventListener("click", () => toggleCode(row, current, showCode, outcome));
  open.addEventListener("click", async () => { current = await latest(); if (current.state === "waiting") askPickup(row, current, outcome); });
  row.querySelector(".confirm-yes").addEventListener("click", () => pickup(row, current, outcome));
  row.querySelector(".confirm-no").addEventListener("click", () => {
    row.querySelector(".confirm").hidden = true;
    row.querySelector(".actions").hidden = current.state !== "waiting";
  });
  return row;
}

async function loadParcels() {
  const res = await api("GET", "/api/v1/parcels?limit=50");
  const list = $("parcels");
  if (res.status !== 200) {
    $("parcels-error").textContent = cy.errorText(res);
    return;
  }
  $("parcels-error").textContent = "";
  for (const url of qrUrls) URL.revokeObjectURL(url);
  qrUrls.clear();
  // Waiting ones first, then the rest newest first (the API's order is newest first).
  const parcels = res.data.parcels.filter((p) => p.state === "waiting")
    .concat(res.data.parcels.filter((p) => p.state !== "waiting"));
  list.replaceChildren(...parcels.map(parcelRow));
  $("parcels-empty").hidden = parcels.length > 0;
  countWaiting();
}

// -- notifications ----------------------------------------------------------------------------

function noteText(n) {
  const b = n.body || {};
  if (n.kind === "parcel.waiting") {
    return b.compartment ? `A parcel is waiting for you in ${b.bank} · compartment ${b.compartment}` : `A parcel is waiting for you in ${b.bank}`;
  }
  return n.kind;
}

// Once the list is on screen, the unread notes in it are marked read, one by one (at most the
// ten listed); the badge and the highlight keep saying what was new until the list is loaded
// again. A note that fails to be marked stays unread and is tried again next time.
async function markRead(notes) {
  for (const n of notes) {
    const r = await api("POST", `/api/v1/notifications/${n.id}/read`);
    if (r.status !== 200) return;
  }
}

// Show the latest notes; the unread ones among them are returned (for markRead).
async function loadNotes() {
  const res = await api("GET", "/api/v1/notifications?limit=10");
  if (res.status !== 200) { $("notes-view").hidden = true; return []; }
  const notes = res.data.notifications;
  const unread = res.data.unread; // of all the resident's notes, not only the ten listed
  const badge = $("notes-badge");
  badge.textContent = unread ? String(unread) : "";
  badge.hidden = !unread;
  badge.setAttribute("aria-label", `${unread} unread`);
  $("notes-empty").hidden = notes.length > 0;
  $("notes").replaceChildren(...notes.map((n) => {
    const li = document.createElement("li");
    li.className = n.read_at === null ? "note unread" : "note";
    const text = document.createElement("span");
    text.textContent = noteText(n);
    const when = document.createElement("time");
    when.dateTime = new Date(n.created_at).toISOString();
    when.textContent = cy.time(n.created_at);
    li.append(text, when);
    return li;
  }));
  return notes.filter((n) => n.read_at === null);
}

// -- start ------------------------------------------------------------------------------------

async function loadHome() {
  const [doors, , unread] = await Promise.all([loadDoors(), loadParcels(), loadNotes()]);
  if (doors) {
    show("home");
    await markRead(unread);
  }
}

async function signedIn(role) {
  if (role === "courier") { location.assign("/courier"); return; }
  await loadHome();
}

cy.bindLogin(signedIn);
$("parcels-refresh").addEventListener("click", async () => {
  const [, unread] = await Promise.all([loadParcels(), loadNotes()]);
  await markRead(unread);
});

if (cy.hasToken()) { loadHome(); } else { show("login"); }
