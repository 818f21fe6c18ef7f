// Courier page: choose a locker and a size, confirm the recipient (unit and masked phone only),
// open a compartment, follow the deposit to "Deposited"; reopen or cancel an empty one; take
// back overdue parcels. Never shows a pickup code. Everything comes from the REST API.
"use strict";

const { $, api } = cy;

const SIZES = [["mini", "Mini"], ["S", "S"], ["M", "M"], ["L", "L"]];
// The default retention (docs/parcels.md, retention_h); the gateway decides (not_overdue).
const RETENTION_MS = 72 * 3600 * 1000;
const POLL_MS = 1000;
const WATCH_MS = 30 * 60 * 1000;
const COMMAND_TEXT = {
  queued: "Sending…",
  sent: "Waiting for the locker…",
  acknowledged: "The locker is opening a compartment…",
};
const STATE_TEXT = {
  requested: "Compartment open",
  empty: "Closed empty — waiting for you",
  waiting: "In the locker",
  picked_up: "Picked up",
  retrieved: "Taken back",
  cancelled: "Cancelled",
  failed: "Failed",
};

let banks = [];
let recipient = null; // {bank, by, value, unit, phone_masked}: the confirmed lookup
let depositKey = null; // kept across a network failure so that a retry is the same deposit
let busy = false;
let generation = 0; // the deposit the progress panel follows; older loops stop
let current = null; // that deposit's parcel

function show(view) {
  $("login-view").hidden = view !== "login";
  $("wrong-role").hidden = view !== "wrong-role";
  $("deposit-view").hidden = view !== "home";
  $("parcels-view").hidden = view !== "home";
  $("progress-view").hidden = true;
  $("logout").hidden = view === "login";
}

cy.onSignedOut = () => { generation += 1; recipient = null; show("login"); };

function say(el, text, cls = "", status = "") {
  el.textContent = text;
  el.className = el.id === "progress" ? `outcome big ${cls}` : `outcome ${cls}`;
  if (status) el.dataset.status = status;
  else delete el.dataset.status;
}

const checked = (name) => {
  const el = document.querySelector(`input[name="${name}"]:checked`);
  return el ? el.value : null;
};

// -- the form ---------------------------------------------------------------------------------

function update() {
  const bank = checked("bank");
  const by = checked("by");
  const value = $("who").value.trim();
  if (recipient && (recipient.bank !== bank || recipient.by !== by || recipient.value !== value)) {
    recipient = null;
  }
  $("recipient").hidden = !recipient;
  $("lookup").disabled = busy || !bank || !value;
  $("deposit").disabled = busy || !bank || !checked("size") || !recipient;
}

function renderSizes() {
  const bank = banks.find((b) => String(b.id) === checked("bank"));
  const previous = checked("size");
  $("sizes").replaceChildren(...SIZES.map(([size, name]) => {
    const label = $("size-choice").content.firstElementChild.cloneNode(true);
    const input = label.querySelector("input");
    const free = bank ? bank.free[size] || 0 : 0;
    input.value = size;
    input.disabled = free === 0;
    input.checked = size === previous && free > 0;
    label.querySelector(".size-name").textContent = name;
    label.querySelector(".size-free").textContent = free === 0 ? "none free" : `${free} free`;
    input.addEventListener("change", update);
    return label;
  }));
}

async function loadBanks() {
  const res = await api("GET", "/api/v1/locker-banks");
  if (res.status !== 200) { $("deposit-error").textContent = cy.errorText(res); return; }
  banks = res.data.banks;
  const previous = checked("bank");
  $("banks-empty").hidden = banks.length > 0;
  $("banks").replaceChildren(...banks.map((b) => {
    const label = $("bank-choice").content.firstElementChild.cloneNode(true);
    const input = label.querySelector("input");
    input.value = String(b.id);
    input.checked = String(b.id) === previous || banks.length === 1;
    label.querySelector(".bank-name").textContent = b.name || b.local_id;
    const free = SIZES.map(([s, n]) => `${n} ${b.free[s] || 0}`).join(" · ");
    label.querySelector(".bank-free").textContent = `free: ${free}`;
    input.addEventListener("change", () => { renderSizes(); update(); });
    return label;
  }));
  renderSizes();
  update();
}

function recipientBody() {
  const by = checked("by");
  return { bank: Number(checked("bank")), [by]: $("who").value.trim() };
}

async function lookup() {
  if ($("lookup").disabled) return;
  $("lookup-error").textContent = "";
  $("deposit-error").textContent = "";
  const by = checked("by");
  const value = $("who").value.trim();
  const bank = checked("bank");
  busy = true; update();
  const res = await api("POST", "/api/v1/recipients/lookup", recipientBody());
  busy = false;
  if (res.status === 200) {
    recipient = { bank, by, value, ...res.data };
    $("recipient").textContent = res.data.phone_masked
      ? `Unit ${res.data.unit} · phone ${res.data.phone_masked}`
      : `Unit ${res.data.unit} · no phone on file`;
  } else {
    recipient = null;
    const missing = by === "phone" ? "Nobody with this phone number lives here" : "No such unit here";
    $("lookup-error").textContent = cy.errorText(res, {
      not_found: missing,
      invalid_body: by === "phone" ? "That is not a phone number" : "That is not a unit",
    });
  }
  update();
}

async function deposit() {
  if ($("deposit").disabled) return;
  $("deposit-error").textContent = "";
  busy = true; update();
  depositKey = depositKey || cy.newKey();
  const body = { ...recipientBody(), size: checked("size") };
  const tracking = $("tracking").value.trim();
  if (tracking) body.tracking = tracking;
  const res = await api("POST", "/api/v1/parcels", body, { "Idempotency-Key": depositKey });
  busy = false;
  if (res.status !== 0) depositKey = null;
  if (res.status !== 202) {
    $("deposit-error").textContent = cy.errorText(res, { not_found: "No such recipient here" });
    update();
    return;
  }
  follow(res.data.parcel, res.data.recipient, res.data.command.command_id);
  loadParcels();
}

function resetForm() {
  recipient = null;
  $("who").value = "";
  $("tracking").value = "";
  $("lookup-error").textContent = "";
  $("deposit-error").textContent = "";
  update();
}

// -- following a deposit ----------------------------------------------------------------------

const compartment = (p) => (p.compartment ? `Compartment ${p.compartment}` : "A compartment");
// What the progress panel shows of a parcel: while its door is open, the compartment number
// arrives with the gateway's report of the open (parcel.opened) and changes after a jam.
const shownAs = (p) => (p.state === "requested" ? `requested:${p.compartment}` : p.state);

async function fresh(p) {
  const r = await api("GET", `/api/v1/parcels/${p.id}`);
  return r.status === 200 ? r.data : p;
}

function render(p) {
  const progress = $("progress");
  $("empty-actions").hidden = p.state !== "empty";
  switch (p.state) {
    case "requested":
      say(progress, `${compartment(p)} is open — put the parcel in and close the door`, "", "open");
      return false;
    case "empty":
      say(progress, `${compartment(p)} was closed with nothing inside. Open it again, or cancel`, "warn", "empty");
      return false;
    case "waiting":
      say(progress, `Deposited in compartment ${p.compartment}`, "ok", "deposited");
      return true;
    case "cancelled":
      say(progress, p.reason === "timeout" ? "Deposit cancelled: nothing was put in in time" : "Deposit cancelled", "warn", "cancelled");
      return true;
    case "failed":
      say(progress, cy.reasonText(p.reason), "bad", "failed");
      return true;
    default:
      say(progress, STATE_TEXT[p.state] || p.state, "", p.state);
      return true;
  }
}

function finished() {
  $("empty-actions").hidden = true;
  $("another").hidden = false;
  loadBanks();
  loadParcels();
}

// Show the deposit in the panel and follow it until it ends (or another one is followed).
async function follow(parcel, who, commandId) {
  const gen = ++generation;
  current = parcel;
  $("deposit-view").hidden = true;
  $("progress-view").hidden = false;
  $("another").hidden = true;
  $("empty-actions").hidden = true;
  const masked = who && who.phone_masked ? ` (${who.phone_masked})` : "";
  $("progress-for").textContent = `For unit ${parcel.unit}${masked} · size ${parcel.size} · ${parcel.bank_name}`;
  $("progress-view").scrollIntoView({ block: "start" });
  const progress = $("progress");
  let seen = null;
  if (commandId) {
    say(progress, COMMAND_TEXT.sent);
    const final = await cy.followCommand(commandId, (status) => {
      if (gen === generation && COMMAND_TEXT[status]) say(progress, COMMAND_TEXT[status], "", status);
    });
    if (gen !== generation) return;
    if (final && final.status !== "opened") {
      say(progress, cy.reasonText(final.reason || final.status), "bad", "failed");
      finished();
      return;
    }
    if (final) {
      // The compartment is reported with the open: show its number at once.
      parcel = await fresh(parcel);
      if (gen !== generation) return;
      current = parcel;
      if (render(parcel)) { finished(); return; }
    } else {
      say(progress, "No answer from the locker yet — still waiting…", "warn", "unknown");
    }
    seen = shownAs(parcel);
  }
  const deadline = Date.now() + WATCH_MS;
  while (gen === generation && Date.now() < deadline) {
    const r = await api("GET", `/api/v1/parcels/${parcel.id}`);
    if (gen !== generation) return;
    if (r.status === 200) {
      current = r.data;
      // Re-render only on a change (of the state, or of the open compartment's number): "open
      // again" stays up while the cloud still says empty.
      if (shownAs(r.data) !== seen) {
        seen = shownAs(r.data);
        if (render(r.data)) { finished(); return; }
        loadParcels();
      }
    }
    await cy.pause(POLL_MS);
  }
}

async function courierAct(action) {
  const p = current;
  if (!p) return;
  const gen = generation;
  const progress = $("progress");
  $("reopen").disabled = true;
  $("cancel").disabled = true;
  say(progress, action === "reopen" ? "Opening the compartment again…" : "Cancelling…");
  const res = await api("POST", `/api/v1/parcels/${p.id}/${action}`, undefined, { "Idempotency-Key": cy.newKey() });
  let final = null;
  if (res.status === 202) {
    final = await cy.followCommand(res.data.command.command_id, () => {});
  }
  $("reopen").disabled = false;
  $("cancel").disabled = false;
  if (gen !== generation) return;
  if (res.status !== 202) {
    say(progress, cy.errorText(res, { wrong_state: "This deposit is no longer waiting for you" }), "bad", "error");
  } else if (final === null) {
    say(progress, "No answer from the locker yet. Check the parcel list", "warn", "unknown");
  } else if (final.status === "opened") {
    // After a jam the gateway opens another compartment: say the one it reported.
    const now = await fresh(p);
    if (gen !== generation) return;
    if (current && current.id === now.id) current = now;
    say(progress, `${compartment(now)} is open again — put the parcel in and close the door`, "", "open");
  } else if (final.status === "completed") {
    $("empty-actions").hidden = true;
    say(progress, "Deposit cancelled", "warn", "cancelled");
  } else {
    say(progress, cy.reasonText(final.reason || final.status), "bad", final.status);
  }
}

// -- my parcels -------------------------------------------------------------------------------

const overdue = (p) => p.state === "waiting" && p.deposited_at && p.deposited_at + RETENTION_MS <= Date.now();

function renderRow(row, p) {
  row.dataset.parcelId = p.id;
  row.dataset.state = p.state;
  row.querySelector(".parcel-who").textContent = `Unit ${p.unit} · size ${p.size}`;
  const place = p.compartment ? `${p.bank_name} · compartment ${p.compartment}` : p.bank_name;
  row.querySelector(".parcel-meta").textContent = `${place} · ${cy.time(p.deposited_at || p.created_at)}`;
  const tracking = row.querySelector(".parcel-tracking");
  tracking.textContent = p.tracking ? `Tracking ${p.tracking}` : "";
  tracking.hidden = !p.tracking;
  const state = row.querySelector(".parcel-state");
  state.textContent = STATE_TEXT[p.state] || p.state;
  state.className = `parcel-state state-${p.state}`;
  const followed = current && current.id === p.id && !$("progress-view").hidden;
  row.querySelector(".resume").hidden = followed || !(p.state === "requested" || p.state === "empty");
  row.querySelector(".retrieve").hidden = !overdue(p);
  row.querySelector(".actions").hidden = row.querySelector(".resume").hidden && row.querySelector(".retrieve").hidden;
}

async function retrieve(row, p, button, outcome) {
  button.disabled = true;
  say(outcome, "Sending…");
  const res = await api("POST", `/api/v1/parcels/${p.id}/retrieve`, undefined, { "Idempotency-Key": cy.newKey() });
  if (res.status !== 202) {
    say(outcome, cy.errorText(res, { wrong_state: "This parcel is no longer in the locker" }), "bad", "error");
    button.disabled = false;
    return;
  }
  const final = await cy.followCommand(res.data.command.command_id, (status) => {
    if (COMMAND_TEXT[status]) say(outcome, COMMAND_TEXT[status], "", status);
  });
  button.disabled = false;
  if (final && final.status === "opened") {
    say(outcome, `Compartment ${p.compartment} is open — take the parcel out and close the door`, "ok", "opened");
  } else {
    say(outcome, final ? cy.reasonText(final.reason || final.status) : "No answer from the locker yet", "bad", final ? final.status : "unknown");
  }
  const r = await api("GET", `/api/v1/parcels/${p.id}`);
  if (r.status === 200) renderRow(row, r.data);
}

async function loadParcels() {
  const res = await api("GET", "/api/v1/parcels?limit=50");
  if (res.status !== 200) { $("parcels-error").textContent = cy.errorText(res); return; }
  $("parcels-error").textContent = "";
  $("parcels-empty").hidden = res.data.parcels.length > 0;
  $("parcels").replaceChildren(...res.data.parcels.map((p) => {
    const row = $("parcel-row").content.firstElementChild.cloneNode(true);
    renderRow(row, p);
    const outcome = row.querySelector(".outcome");
    const resume = row.querySelector(".resume");
    const retrieveButton = row.querySelector(".retrieve");
    const title = row.querySelector(".parcel-who");
    title.id = `parcel-${p.id}`;
    for (const button of [resume, retrieveButton]) button.setAttribute("aria-describedby", title.id);
    resume.addEventListener("click", () => follow(p, null, null));
    retrieveButton.addEventListener("click", () => retrieve(row, p, retrieveButton, outcome));
    return row;
  }));
}

// -- start ------------------------------------------------------------------------------------

async function loadHome() {
  show("home");
  await Promise.all([loadBanks(), loadParcels()]);
}

async function signedIn(role) {
  if (role !== "courier") { show("wrong-role"); return; }
  await loadHome();
}

cy.bindLogin(signedIn);
$("deposit-form").addEventListener("submit", (e) => { e.preventDefault(); deposit(); });
$("lookup").addEventListener("click", lookup);
$("who").addEventListener("input", update);
$("who").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); lookup(); }
});
for (const input of document.querySelectorAll('input[name="by"]')) {
  input.addEventListener("change", () => {
    const phone = checked("by") === "phone";
    $("who-label").textContent = phone ? "Phone number" : "Unit";
    $("who").type = phone ? "tel" : "text";
    $("who").inputMode = phone ? "tel" : "text";
    $("who").maxLength = phone ? 32 : 40;
    $("who").placeholder = phone ? "e.g. 138 0013 8000" : "e.g. 1-201";
    $("who").value = "";
    $("lookup-error").textContent = "";
    update();
  });
}
$("reopen").addEventListener("click", () => courierAct("reopen"));
$("cancel").addEventListener("click", () => courierAct("cancel"));
$("another").addEventListener("click", () => {
  generation += 1;
  current = null;
  $("progress-view").hidden = true;
  $("deposit-view").hidden = false;
  resetForm();
});
$("parcels-refresh").addEventListener("click", () => Promise.all([loadBanks(), loadParcels()]));

if (cy.hasToken()) {
  api("GET", "/api/v1/me").then((r) => {
    if (r.status === 200) signedIn(r.data.role);
    else show("login");
  });
} else {
  show("login");
}
