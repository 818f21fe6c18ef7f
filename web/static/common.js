// Shared by the resident and courier pages: the API client, sign-in, commands, formatting.
// No framework, no external assets; text goes into the page with textContent only.
"use strict";

const cy = (() => {
  const TOKEN_KEY = "courtyard.token";
  const TERMINAL = new Set(["opened", "released_not_opened", "completed", "rejected", "failed", "expired"]);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let onSignedOut = () => {};

  // Why a locker command ended without opening anything (the gateway's and the cloud's reasons).
  const REASONS = {
    no_free_compartment: "No free compartment of this size — choose another size or locker",
    jammed: "The compartment door is stuck. Try again, or choose another size",
    board_offline: "The locker is not responding. Try again in a moment",
    not_found: "The locker has no such parcel",
    already_claimed: "This parcel is already being collected or was collected",
    duplicate: "The locker already has this parcel",
    wrong_state: "This parcel can no longer be changed",
    not_overdue: "The parcel is not overdue yet",
    not_your_parcel: "Only the courier who deposited this parcel can take it back",
    interrupted: "The locker restarted during the request. Check the parcel list",
    expired: "No answer from the locker in time",
    no_outcome: "The locker did not report the result",
    internal_error: "The locker reported an internal error",
    bad_args: "The locker refused the request",
  };

  // Errors of the REST API, by their stable code.
  const ERRORS = {
    not_found: "Not found, or not yours",
    wrong_state: "This parcel can no longer be changed",
    idempotency_conflict: "That request was already used for something else. Please try again",
    invalid_body: "Please check what you entered",
    invalid_query: "Please check what you entered",
    rate_limited: "Too many requests",
    unauthenticated: "Please sign in again",
    internal: "Something went wrong on our side",
    unavailable: "The service is not available right now",
  };

  const $ = (id) => document.getElementById(id);

  function setToken(value) {
    token = value;
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  // {status, data, headers}; status 0 when the network failed (data null).
  async function api(method, path, body, headers = {}) {
    const h = { Accept: "application/json", ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (_) {
      return { status: 0, data: null, headers: new Headers() };
    }
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (res.status === 401 && token) { signOut(); }
    return { status: res.status, data, headers: res.headers };
  }

  // An image behind the bearer token, as an object URL (an <img src> cannot send the header).
  async function imageUrl(path) {
    try {
      const res = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: "image/png" } });
      if (!res.ok) return null;
      return URL.createObjectURL(await res.blob());
    } catch (_) {
      return null;
    }
  }

  function signOut() {
    setToken(null);
    onSignedOut();
  }

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // A failed API answer as a sentence for people (never the raw input).
  function errorText(res, special = {}) {
    if (res.status === 0) return "No connection. Check your network and try again";
    const code = res.data && res.data.error && res.data.error.code;
    if (code && special[code]) return special[code];
    if (code === "rate_limited") {
      const wait = Number(res.headers.get("Retry-After"));
      const minutes = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait / 60) : null;
      return minutes ? `Too many requests. Try again in ${minutes} min` : "Too many requests. Try again later";
    }
    return ERRORS[code] || `Something went wrong (error ${res.status})`;
  }

  function reasonText(reason) {
    return REASONS[reason] || (reason ? `Refused: ${reason}` : "The request failed");
  }

  // Long-poll a command until it is final; onStatus(status) on each change. The final command,
  // or null when it could not be read (then the caller says so).
  async function followCommand(id, onStatus, limitMs = 120_000) {
    const deadline = Date.now() + limitMs;
    let last = null;
    while (Date.now() < deadline) {
      const r = await api("GET", `/api/v1/commands/${encodeURIComponent(id)}?wait=20`);
      if (r.status !== 200) return null;
      if (r.data.status !== last) { last = r.data.status; onStatus(last); }
      if (TERMINAL.has(r.data.status)) return r.data;
    }
    return null;
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function time(ms) {
    if (!ms) return "";
    return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function money(cents) {
    return `¥${(cents / 100).toFixed(2)}`;
  }

  // Sign in with the page's login form; resolves to the session's role, or null.
  function bindLogin(onSignedIn) {
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("login-error").textContent = "";
      const button = $("sign-in");
      button.disabled = true;
      const res = await api("POST", "/api/v1/sessions", { login: $("login").value, password: $("password").value });
      button.disabled = false;
      if (res.status === 201 && res.data && res.data.token) {
        setToken(res.data.token);
        $("password").value = "";
        await onSignedIn(res.data.role);
      } else if (res.status === 429) {
        $("login-error").textContent = "Too many attempts. Try again later.";
      } else if (res.status === 0) {
        $("login-error").textContent = "No connection. Try again.";
      } else {
        $("login-error").textContent = "Wrong login or password.";
      }
    });
    $("logout").addEventListener("click", async () => {
      await api("DELETE", "/api/v1/sessions/current");
      signOut();
    });
  }

  return {
    $,
    api,
    imageUrl,
    signOut,
    newKey,
    errorText,
    reasonText,
    followCommand,
    pause,
    time,
    money,
    bindLogin,
    hasToken: () => Boolean(token),
    set onSignedOut(fn) { onSignedOut = fn; },
  };
})();
