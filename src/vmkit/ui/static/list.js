// The VM list: live rows, each with its actions, and a bulk bar for the VMs ticked.
import { h, formatUptime } from "./dom.js";
import { ACTIONS, bulkAction } from "./actions.js";

const LIVE = ["running", "paused"];

export function portsText(vm) {
  return vm.ports.map((p) => `${p.host_addr}:${p.host_port}→${p.guest_port}/${p.proto}`)
    .join(", ") || "–";
}

function uptimeText(vm) {
  return LIVE.includes(vm.state) && vm.started ? formatUptime(Date.now() / 1000 - vm.started) : "–";
}

export function show(main, ctx) {
  const { state } = ctx;
  const selected = new Set();
  const body = h("tbody");
  const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select every VM" });
  const table = h("table", { class: "vms list" },
    h("caption", {}, "Updates live as VMs change."),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all),
      ...["Name", "State", "Image", "CPUs", "Memory", "IPs", "Ports", "Uptime", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))),
    body);
  const empty = h("p", { class: "empty card" }, "No VMs yet. ",
                  h("a", { href: "#/new" }, "Create one"), ".");
  const count = h("span", { class: "muted", role: "status", "aria-live": "polite" });
  const bulk = h("div", { class: "bulk", id: "bulk", role: "toolbar", "aria-label": "Selected VMs" },
    count, ...["start", "stop", "restart", "delete"].map((action) => {
      const button = h("button", { type: "button", "data-bulk": action,
                                   class: ACTIONS[action].danger ? "danger" : "quiet" },
                       `${ACTIONS[action].label} selected`);
      button.addEventListener("click", async () => {
        button.disabled = true;
        await bulkAction(ctx.api, [...selected].map((n) => state.vms.get(n)).filter(Boolean), action);
        button.disabled = false;
      });
      return button;
    }));

  const vmRow = (vm) => {
    const ips = state.ips.get(vm.name);
    const showIps = vm.state === "running" && ips && ips.started === vm.started && ips.ips.length;
    const tick = h("input", { type: "checkbox", "aria-label": `Select ${vm.name}`,
                              "data-select": vm.name, checked: selected.has(vm.name) });
    tick.addEventListener("change", () => {
      if (tick.checked) selected.add(vm.name); else selected.delete(vm.name);
      renderBulk();
    });
    return h("tr", { "data-vm": vm.name },
      h("td", { class: "tick" }, tick),
      h("th", { scope: "row", "data-label": "Name" },
        h("a", { href: `#/vm/${encodeURIComponent(vm.name)}` }, vm.name)),
      h("td", { "data-label": "State" },
        h("span", { class: `state state-${vm.state}`, "data-state": vm.state }, vm.state)),
      h("td", { "data-label": "Image" }, vm.image || "blank disk"),
      h("td", { "data-label": "CPUs" }, String(vm.cpus)),
      h("td", { "data-label": "Memory" }, vm.memory),
      h("td", { "data-label": "IPs" }, showIps ? ips.ips.join(", ") : "–"),
      h("td", { "data-label": "Ports" }, portsText(vm)),
      h("td", { "data-label": "Uptime", "data-started": vm.started ?? "",
                "data-live": LIVE.includes(vm.state) ? "1" : "" }, uptimeText(vm)),
      h("td", { class: "actions", "data-label": "Actions" }, ctx.actionButtons(vm)));
  };
  const renderBulk = () => {
    for (const name of [...selected]) if (!state.vms.has(name)) selected.delete(name);
    bulk.hidden = selected.size === 0;
    count.textContent = `${selected.size} selected`;
    all.checked = selected.size > 0 && selected.size === state.vms.size;
    all.indeterminate = selected.size > 0 && selected.size < state.vms.size;
  };
  all.addEventListener("change", () => {
    for (const name of state.vms.keys()) if (all.checked) selected.add(name); else selected.delete(name);
    render();
  });
  const render = () => {
    // Keep focus on the same control across a re-render (a state change replaces the row).
    const focused = document.activeElement;
    const key = focused?.closest?.("tr[data-vm]") &&
      [focused.closest("tr").dataset.vm, focused.dataset.action, focused.dataset.select];
    body.replaceChildren(...[...state.vms.values()].map(vmRow));
    table.hidden = state.vms.size === 0;
    empty.hidden = state.vms.size !== 0;
    renderBulk();
    if (key) {
      const inner = key[1] ? `[data-action="${key[1]}"]` : "[data-select]";
      body.querySelector(`tr[data-vm="${CSS.escape(key[0])}"] ${inner}`)?.focus();
    }
  };
  main.replaceChildren(
    h("div", { class: "vm-head" }, h("h1", {}, "Virtual machines"),
      h("a", { class: "button", href: "#/new" }, "Create VM")),
    bulk, table, empty);
  render();
  const unlisten = ctx.listen((name, vm, what) => { if (what !== "log") render(); });
  // The uptime column counts on screen; no request is made for it.
  const timer = setInterval(() => {
    for (const cell of body.querySelectorAll("td[data-live='1']")) {
      cell.textContent = formatUptime(Date.now() / 1000 - Number(cell.dataset.started));
    }
  }, 1000);
  return () => { unlisten(); clearInterval(timer); };
}
