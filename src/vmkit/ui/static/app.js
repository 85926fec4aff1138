// vmkit dashboard: log in with the API token, follow vmkitd's events, and route to the pages
// listed in pages.js. Plain ES modules, no build step of our own.
import { Api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { actionButtons } from "./actions.js";
import { PAGES, SUBPAGES } from "./pages.js";

const TOKEN_KEY = "vmkit-token";
const LOG_SIZE = 500; // events kept for the Events page
const main = document.getElementById("main");
const state = {
  api: null,
  vms: new Map(),       // name -> VM as the API describes it
  ips: new Map(),       // name -> {started, ips}: fetched once per boot
  log: [],              // {time, kind, target, message}: what changed since the tab opened
  listeners: new Set(), // views that want to hear of changes: fn(name, vm | null, what)
  stopFollowing: null,
  live: false,
};

// --- login ----------------------------------------------------------------------------

// 'vmkit ui' opens the page with #token=...: keep it in the session, drop it from the URL.
// Also in a tab already open (a hash change): the new token replaces the old one.
function takeTokenFromUrl() {
  if (!location.hash.startsWith("#token=")) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", `${location.pathname}#/`);
  return true;
}

async function tryToken(token) {
  const api = new Api(token);
  await api.get("/info"); // 401 for a wrong token
  return api;
}

function setLoggedIn(yes) {
  document.getElementById("nav").hidden = !yes;
  document.getElementById("logout").hidden = !yes;
  document.getElementById("live").textContent = "";
}

function showLogin(message = "") {
  stopFollowing();
  leave();
  state.api = null;
  setLoggedIn(false);
  document.title = "Log in – vmkit";
  const error = h("p", { id: "token-error", class: "error", role: "alert" }, message);
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "current-password",
    required: true, "aria-describedby": "token-hint token-error",
    "aria-invalid": message ? "true" : "false",
  });
  const form = h("form", { class: "form card", id: "login" },
    h("h1", {}, "Log in to vmkit"),
    h("div", { class: "field" },
      h("label", { for: "token" }, "API token"),
      input,
      h("span", { id: "token-hint", class: "hint" },
        "On the vmkit host, 'vmkit host token' prints it; 'vmkit ui' opens this page logged in.")),
    error,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Log in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      showLogin("Enter the token.");
      return;
    }
    await logIn(token, (e) => (e instanceof ApiError && e.status === 401
      ? "vmkitd refused this token. Copy it again from 'vmkit host token'." : e.message));
  });
  main.replaceChildren(form);
  input.focus();
}

async function logIn(token, why) {
  try {
    state.api = await tryToken(token);
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(why(e));
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  if (!routeOf(location.hash)) history.replaceState(null, "", `${location.pathname}#/`);
  start();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
}

// --- live updates -----------------------------------------------------------------------

function stopFollowing() {
  state.stopFollowing?.();
  state.stopFollowing = null;
}

function follow() {
  stopFollowing();
  state.vms.clear();
  state.stopFollowing = state.api.follow((name, data) => {
    if (name === "unauthorized") {
      showLogin("vmkitd no longer accepts the token (its token changed?); log in again.");
    } else if (name === "vms") {
      const seen = new Set(data.map((vm) => vm.name));
      for (const old of state.vms.keys()) if (!seen.has(old)) changed(old, null);
      for (const vm of data) changed(vm.name, vm);
    } else if (name === "vm") {
      changed(data.name, data.vm);
    } else if (name === "snapshots") {
      record("snapshots", data.vm, "its snapshots changed");
      for (const fn of state.listeners) fn(data.vm, state.vms.get(data.vm), "snapshots");
    }
  }, (status) => {
    state.live = status === "live";
    document.getElementById("live").textContent =
      state.live ? "Live" : "Connection lost, reconnecting…";
  });
}

function changed(name, vm) {
  const before = state.vms.get(name);
  if (!before && vm) record("vm", name, `${vm.state} (${vm.image || "blank disk"}, ${vm.memory})`);
  else if (before && !vm) record("vm", name, "removed");
  else if (before && vm && before.state !== vm.state) record("vm", name, `${before.state} → ${vm.state}`);
  if (vm) state.vms.set(name, vm);
  else state.vms.delete(name);
  if (vm && vm.state === "running") fetchIps(vm);
  for (const fn of state.listeners) fn(name, vm, "vm");
}

function record(kind, target, message) {
  state.log.push({ time: Date.now() / 1000, kind, target, message });
  if (state.log.length > LOG_SIZE) state.log.shift();
  for (const fn of state.listeners) fn(target, state.vms.get(target), "log");
}

// The guest's addresses come from its agent (the stats call), once per boot.
async function fetchIps(vm, attempt = 0) {
  const known = state.ips.get(vm.name);
  if (known && known.started === vm.started && (known.ips.length || attempt)) return;
  state.ips.set(vm.name, { started: vm.started, ips: known?.ips || [] });
  try {
    const stats = await state.api.get(`/vms/${encodeURIComponent(vm.name)}/stats`);
    state.ips.set(vm.name, { started: vm.started, ips: stats.ips || [] });
    for (const fn of state.listeners) fn(vm.name, state.vms.get(vm.name), "ips");
    if (!(stats.ips || []).length && attempt < 3) {
      setTimeout(() => { // unless the VM went meanwhile: its stats would be a 404
        const now = state.vms.get(vm.name);
        if (now) fetchIps(now, attempt + 1);
      }, 5000);
    }
  } catch (e) { /* the VM stopped meanwhile: its next boot tries again */ }
}

function listen(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

// --- routing ----------------------------------------------------------------------------

let leaveView = null;
let routed = 0; // a newer route wins over a page module still loading

function leave() {
  leaveView?.();
  leaveView = null;
}

function routeOf(hash) {
  const path = (hash || "#/").slice(1) || "/";
  const page = PAGES.find((p) => p.path === path);
  if (page) return { page, arg: null };
  const sub = SUBPAGES.find((p) => path.startsWith(p.prefix));
  return sub ? { page: sub, arg: decodeURIComponent(path.slice(sub.prefix.length)) } : null;
}

async function route() {
  if (takeTokenFromUrl()) {
    boot();
    return;
  }
  if (!state.api) return;
  leave();
  const found = routeOf(location.hash) || { page: PAGES[0], arg: null };
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.path === found.page.path);
    if (link.dataset.path === found.page.path) link.setAttribute("aria-current", "page");
  }
  document.title = `${found.arg ?? found.page.label} – vmkit`;
  const mine = ++routed;
  const module = await found.page.load();
  if (mine !== routed || !state.api) return;
  window.scrollTo(0, 0); // a page opens at its top, not where the last one was scrolled
  const ctx = { api: state.api, state, listen, actionButtons: (vm, opts) => actionButtons(state.api, vm, opts) };
  leaveView = module.show(main, ctx, found.arg) || null;
}

function buildNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...PAGES.map((p) => h("a", { href: `#${p.path}`, "data-path": p.path }, p.label)));
}

function start() {
  setLoggedIn(true);
  follow();
  route();
}

async function boot() {
  takeTokenFromUrl();
  const token = sessionStorage.getItem(TOKEN_KEY);
  stopFollowing();
  if (!token) {
    showLogin();
    return;
  }
  await logIn(token, (e) => (e.status === 401
    ? "The saved token no longer works; log in again." : e.message));
}

buildNav();
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
boot();
