// Events: what changed since this tab opened (VMs created, started, stopped, removed;
// snapshots) from the live feed, with vmkitd's latest operations (builds, imports, runs,
// migrations) and how they ended. Newest first.
import { h, table, row, formatTime } from "./dom.js";

const OPS_EVERY = 3000; // ms between two readings of the operations while the page is open

export function show(main, ctx) {
  const { api, state } = ctx;
  const filter = h("input", { id: "events-filter", type: "search", placeholder: "a VM, image, kind…", autocomplete: "off" });
  const list = h("div", { "aria-live": "polite" });
  let operations = [];
  const render = () => {
    const words = filter.value.trim().toLowerCase();
    const entries = [
      ...state.log.map((e) => ({ ...e, state: "" })),
      ...operations.map((op) => ({
        time: op.updated, kind: op.kind, target: op.target, state: op.state,
        message: op.state === "failed" ? op.error : op.state === "running"
          ? `${Math.round(op.progress * 100)}% ${op.message}` : op.message,
      })),
    ].filter((e) => !words || `${e.kind} ${e.target} ${e.message} ${e.state}`.toLowerCase().includes(words))
      .sort((a, b) => b.time - a.time);
    list.replaceChildren(entries.length ? table("events", ["Time", "Kind", "Target", "State", "What"],
      entries.map((e, i) => row(String(i), [["Time", formatTime(e.time)], ["Kind", e.kind], ["Target", e.target],
        ["State", e.state ? h("span", { class: `state state-${e.state}` }, e.state) : "–"], ["What", e.message || "–"]])))
      : h("p", { class: "muted" }, "Nothing yet: VMs changing, and builds, imports, runs and migrations show here."));
  };
  const readOps = async () => {
    try { operations = await api.get("/operations?limit=100"); } catch (e) { /* shown next time */ }
    render();
  };
  filter.addEventListener("input", render);
  main.replaceChildren(h("h1", {}, "Events"),
    h("p", { class: "muted" }, "VM changes since this page was opened, and vmkitd's latest operations."),
    h("div", { class: "field narrow" }, h("label", { for: "events-filter" }, "Filter"), filter),
    h("section", { class: "card", "aria-label": "Events" }, list));
  readOps();
  const timer = setInterval(readOps, OPS_EVERY);
  const unlisten = ctx.listen((name, vm, what) => { if (what === "log") render(); });
  return () => { clearInterval(timer); unlisten(); };
}
