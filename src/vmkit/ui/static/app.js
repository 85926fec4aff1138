// vmkit dashboard: log in with the API token, the live VM list, the create form, and the
// router to the VM page (vm.js). Plain ES modules, no build step of our own.
import { Api, ApiError } from "./api.js";
import { h, confirmAction, toast, formatUptime } from "./dom.js";
import { showVm } from "./vm.js";

const TOKEN_KEY = "vmkit-token";
const main = document.getElementById("main");
const state = {
  api: null,
  vms: new Map(),       // name -> VM as the API describes it
  ips: new Map(),       // name -> {started, ips}: fetched once per boot
  listeners: new Set(), // views that want to hear of VM changes: fn(name, vm | null)
  stopFollowing: null,
  live: false,
};

// --- login ----------------------------------------------------------------------------

function takeTokenFromUrl() {
  // 'vmkit ui' opens the page with #token=...: keep it in the session, drop it from the URL.
  if (location.hash.startsWith("#token=")) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, "", `${location.pathname}#/`);
  }
}

async function tryToken(token) {
  const api = new Api(token);
  await api.get("/info"); // 401 for a wrong token
  return api;
}

function showLogin(message = "") {
  stopFollowing();
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
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
        "On the vmkit host, 'vmkit host token' prints it.")),
    error,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Log in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      showLogin("Enter the token.");
      return;
    }
    try {
      state.api = await tryToken(token);
    } catch (e) {
      const why = e instanceof ApiError && e.status === 401
        ? "vmkitd refused this token. Copy it again from 'vmkit host token'."
        : e.message;
      showLogin(why);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    location.hash = "#/";
    start();
  });
  main.replaceChildren(form);
  input.focus();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.api = null;
  showLogin();
}

// --- live updates -----------------------------------------------------------------------

function stopFollowing() {
  state.stopFollowing?.();
  state.stopFollowing = null;
}

function follow() {
  stopFollowing();
  state.stopFollowing = state.api.follow((name, data) => {
    if (name === "unauthorized") {
      logout();
    } else if (name === "vms") {
      const seen = new Set(data.map((vm) => vm.name));
      for (const old of state.vms.keys()) if (!seen.has(old)) changed(old, null);
      for (const vm of data) changed(vm.name, vm);
    } else if (name === "vm") {
      changed(data.name, data.vm);
    } else if (name === "snapshots") {
      for (const fn of state.listeners) fn(data.vm, state.vms.get(data.vm), "snapshots");
    }
  }, (status) => {
    state.live = status === "live";
    document.getElementById("live").textContent =
      state.live ? "Live" : "Connection lost, reconnecting…";
  });
}

function changed(name, vm) {
  if (vm) state.vms.set(name, vm);
  else state.vms.delete(name);
  if (vm && vm.state === "running") fetchIps(vm);
  for (const fn of state.listeners) fn(name, vm, "vm");
}

// The guest's addresses come from its agent (the stats call), once per boot.
async function fetchIps(vm, attempt = 0) {
  const known = state.ips.get(vm.name);
  if (known && known.started === vm.started && (known.ips.length || attempt)) return;
  state.ips.set(vm.name, { started: vm.started, ips: known?.ips || [] });
  try {
    const stats = await state.api.get(`/vms/${vm.name}/stats`);
    state.ips.set(vm.name, { started: vm.started, ips: stats.ips || [] });
    for (const fn of state.listeners) fn(vm.name, state.vms.get(vm.name), "ips");
    if (!(stats.ips || []).length && attempt < 3) {
      setTimeout(() => fetchIps(state.vms.get(vm.name) || vm, attempt + 1), 5000);
    }
  } catch (e) { /* the VM stopped meanwhile: its next boot tries again */ }
}

export function listen(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

// --- VM actions -------------------------------------------------------------------------

const ACTIONS = {
  start: { label: "Start", when: ["stopped", "crashed"] },
  stop: { label: "Stop", when: ["running", "paused"], confirm: "shuts the guest down" },
  pause: { label: "Pause", when: ["running"] },
  resume: { label: "Resume", when: ["paused"] },
  restart: { label: "Restart", when: ["running"], confirm: "shuts the guest down and boots it again" },
  delete: {
    label: "Delete", when: ["stopped", "crashed", "running", "paused"], danger: true,
    confirm: "removes the VM and its disk for good",
  },
};

export function actionButtons(vm, { onDone } = {}) {
  const buttons = [];
  for (const [action, info] of Object.entries(ACTIONS)) {
    if (!info.when.includes(vm.state)) continue;
    const button = h("button", {
      type: "button", class: info.danger ? "danger" : "quiet",
      "aria-label": `${info.label} ${vm.name}`, "data-action": action,
    }, info.label);
    button.addEventListener("click", () => runAction(vm, action, button, onDone));
    buttons.push(button);
  }
  return h("div", { class: "buttons" }, ...buttons);
}

async function runAction(vm, action, button, onDone) {
  const info = ACTIONS[action];
  if (info.confirm && !(await confirmAction(`${info.label} ${vm.name}?`,
                                            `This ${info.confirm}.`, info.label))) {
    button.focus();
    return;
  }
  button.disabled = true;
  try {
    if (action === "delete") await state.api.delete(`/vms/${vm.name}?force=true`);
    else await state.api.post(`/vms/${vm.name}/${action}`);
    onDone?.(action);
  } catch (e) {
    toast(`${info.label} ${vm.name}: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- the VM list ------------------------------------------------------------------------

function portsText(vm) {
  return vm.ports.map((p) => `${p.host_addr}:${p.host_port}→${p.guest_port}/${p.proto}`)
    .join(", ") || "–";
}

function vmRow(vm) {
  const ips = state.ips.get(vm.name);
  const showIps = vm.state === "running" && ips && ips.started === vm.started;
  return h("tr", { "data-vm": vm.name },
    h("th", { scope: "row", "data-label": "Name" },
      h("a", { href: `#/vm/${encodeURIComponent(vm.name)}` }, vm.name)),
    h("td", { "data-label": "State" },
      h("span", { class: `state state-${vm.state}`, "data-state": vm.state }, vm.state)),
    h("td", { "data-label": "Image" }, vm.image),
    h("td", { "data-label": "CPUs" }, String(vm.cpus)),
    h("td", { "data-label": "Memory" }, vm.memory),
    h("td", { "data-label": "IPs" }, showIps && ips.ips.length ? ips.ips.join(", ") : "–"),
    h("td", { "data-label": "Ports" }, portsText(vm)),
    h("td", { "data-label": "Uptime", "data-started": vm.started ?? "",
              "data-live": ["running", "paused"].includes(vm.state) ? "1" : "" },
      uptimeText(vm)),
    h("td", { class: "actions", "data-label": "Actions" }, actionButtons(vm)));
}

function uptimeText(vm) {
  return ["running", "paused"].includes(vm.state) && vm.started
    ? formatUptime(Date.now() / 1000 - vm.started) : "–";
}

function showList() {
  const body = h("tbody");
  const table = h("table", { class: "vms" },
    h("caption", {}, "Updates live as VMs change."),
    h("thead", {}, h("tr", {}, ...["Name", "State", "Image", "CPUs", "Memory", "IPs", "Ports",
                                     "Uptime", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  const empty = h("p", { class: "empty card" }, "No VMs yet. ",
                  h("a", { href: "#/new" }, "Create one"), ".");
  const render = () => {
    // Keep focus on the same button across a re-render (a state change replaces the row).
    const focused = document.activeElement;
    const focusKey = focused?.dataset?.action &&
      [focused.closest("tr")?.dataset.vm, focused.dataset.action];
    body.replaceChildren(...[...state.vms.values()].map(vmRow));
    table.hidden = state.vms.size === 0;
    empty.hidden = state.vms.size !== 0;
    if (focusKey) {
      body.querySelector(`tr[data-vm="${focusKey[0]}"] [data-action="${focusKey[1]}"]`)?.focus();
    }
  };
  main.replaceChildren(
    h("div", { class: "vm-head" }, h("h1", {}, "Virtual machines"),
      h("a", { class: "button", href: "#/new" }, "Create VM")),
    table, empty);
  render();
  const unlisten = listen(() => render());
  // The uptime column counts on screen; no request is made for it.
  const timer = setInterval(() => {
    for (const cell of body.querySelectorAll("td[data-live='1']")) {
      cell.textContent = formatUptime(Date.now() / 1000 - Number(cell.dataset.started));
    }
  }, 1000);
  return () => { unlisten(); clearInterval(timer); };
}

// --- the create form --------------------------------------------------------------------

const FIELDS = [
  // [id, label, hint, input attributes]
  ["image", "Image", "A built image ('vmkit image ls').", {}],
  ["name", "Name", "Letters, digits and '-'; also the guest's hostname.", { autocomplete: "off" }],
  ["cpus", "CPUs", "1 to 64.", { type: "number", value: "1", inputmode: "numeric" }],
  ["memory", "Memory", "e.g. 256M or 1G.", { value: "256M" }],
  ["disk", "Disk", "e.g. 2G; empty: the image's size.", { placeholder: "image's size" }],
  ["ports", "Port forwards", "HOST:GUEST, comma-separated, e.g. 8080:80, 2222:22.",
   { placeholder: "8080:80" }],
  ["network", "Network", "nat: outbound access; restricted: no way out; none: no NIC.", {}],
  ["display", "Display", "vnc: a screen shown on the VM's page.", {}],
];

// Which field an API message is about (messages name the field they reject).
function fieldOf(message) {
  const m = message.toLowerCase();
  const rules = [
    ["ports", /port|forward/], ["name", /vm name|a vm named|^name\b|hostname/],
    ["cpus", /^cpus\b/], ["memory", /^memory\b|more than this host/],
    ["disk", /^disk\b|disk size/], ["network", /network|nic/], ["image", /image/],
    ["display", /display/],
  ];
  return rules.find(([, re]) => re.test(m))?.[0] || null;
}

async function showCreate() {
  const controls = {};
  const errors = {};
  const fields = FIELDS.map(([id, label, hint, attrs]) => {
    let control;
    if (id === "image" || id === "network" || id === "display") {
      control = h("select", { id, name: id });
    } else {
      control = h("input", { id, name: id, ...attrs });
    }
    control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    controls[id] = control;
    errors[id] = h("span", { id: `${id}-error`, class: "error" });
    return h("div", { class: "field" }, h("label", { for: id }, label), control,
             h("span", { id: `${id}-hint`, class: "hint" }, hint), errors[id]);
  });
  const status = h("p", { role: "status", "aria-live": "polite", class: "muted" });
  const formError = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Create and boot");
  const form = h("form", { class: "form card", id: "create", novalidate: true },
    h("h1", {}, "Create a VM"), fields[0], fields[1],
    h("div", { class: "row" }, fields[2], fields[3], fields[4]),
    fields[5], h("div", { class: "row" }, fields[6], fields[7]),
    formError, h("div", { class: "buttons" }, submit,
                 h("a", { class: "button quiet", href: "#/" }, "Cancel")), status);
  main.replaceChildren(form);
  controls.name.focus();
  fillSelects(controls);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const id of Object.keys(controls)) {
      errors[id].textContent = "";
      controls[id].setAttribute("aria-invalid", "false");
    }
    formError.textContent = "";
    const v = (id) => controls[id].value.trim();
    const body = {
      name: v("name"), image: v("image") || "tiny", memory: v("memory"),
      disk: v("disk") || null, network: v("network"), display: v("display"),
      ports: v("ports") ? v("ports").split(/[\s,]+/).filter(Boolean) : [],
    };
    const cpus = Number(v("cpus"));
    body.cpus = Number.isInteger(cpus) && v("cpus") !== "" ? cpus : v("cpus");
    submit.disabled = true;
    status.textContent = `Booting ${body.name}…`;
    try {
      await state.api.post("/vms", body);
      status.textContent = `${body.name} is running.`;
      location.hash = `#/vm/${encodeURIComponent(body.name)}`;
    } catch (e) {
      status.textContent = "";
      const field = fieldOf(e.message);
      if (field && e.status !== 0) {
        errors[field].textContent = e.message;
        controls[field].setAttribute("aria-invalid", "true");
        controls[field].focus();
      } else {
        formError.textContent = e.message;
      }
    } finally {
      submit.disabled = false;
    }
  });
}

async function fillSelects(controls) {
  const [images, networks] = await Promise.all([
    state.api.get("/images").catch(() => []), state.api.get("/networks").catch(() => []),
  ]);
  const names = images.map((i) => i.name);
  if (!names.includes("tiny")) names.unshift("tiny");
  controls.image.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  const nets = ["nat", "restricted", "none", ...networks.map((n) => n.name)];
  controls.network.replaceChildren(...nets.map((n) => h("option", { value: n }, n)));
  controls.display.replaceChildren(...["none", "vnc"].map((n) => h("option", { value: n }, n)));
}

// --- routing ----------------------------------------------------------------------------

let leaveView = null;

function route() {
  if (!state.api) return;
  leaveView?.();
  leaveView = null;
  const hash = location.hash || "#/";
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === hash);
    if (link.getAttribute("href") === hash) link.setAttribute("aria-current", "page");
  }
  if (hash.startsWith("#/vm/")) {
    const name = decodeURIComponent(hash.slice(5));
    document.title = `${name} – vmkit`;
    leaveView = showVm(main, name, { api: state.api, state, listen, actionButtons });
  } else if (hash === "#/new") {
    document.title = "Create VM – vmkit";
    showCreate();
  } else {
    document.title = "Virtual machines – vmkit";
    leaveView = showList();
  }
}

function start() {
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  follow();
  route();
}

async function boot() {
  takeTokenFromUrl();
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin();
    return;
  }
  try {
    state.api = await tryToken(token);
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e.status === 401 ? "The saved token no longer works; log in again." : e.message);
    return;
  }
  start();
}

boot();
