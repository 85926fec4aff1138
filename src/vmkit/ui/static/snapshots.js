// A VM's snapshots, drawn as a tree (each under the one it descends from, "now" under the
// current one, as Proxmox shows them), with sizes; create, restore, fork and delete.
import { h, confirmAction, confirmDelete, promptText, toast, formatBytes } from "./dom.js";

export class Snapshots {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.path = `/vms/${encodeURIComponent(name)}/snapshots`;
    this.tree = h("div", { class: "snap-tree" });
    const snapName = h("input", { id: "snap-name", placeholder: "snap1, snap2… if empty", autocomplete: "off" });
    const memory = h("input", { id: "snap-memory", type: "checkbox", checked: true });
    const create = h("button", { type: "submit" }, "Create snapshot");
    const form = h("form", { class: "inline" },
      h("div", { class: "field" }, h("label", { for: "snap-name" }, "Name"), snapName),
      h("div", { class: "field" }, h("label", { for: "snap-memory" }, memory, " with memory")),
      create);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      create.disabled = true;
      try {
        await this.api.post(this.path, { name: snapName.value.trim() || null, memory: memory.checked });
        snapName.value = "";
      } catch (e) {
        toast(`Snapshot: ${e.message}`);
      } finally {
        create.disabled = false;
      }
    });
    card.append(form, this.tree);
  }

  async refresh() {
    let snaps;
    try {
      snaps = await this.api.get(this.path);
    } catch (e) {
      return; // the VM is gone: the page says so
    }
    if (!snaps.length) {
      this.tree.replaceChildren(h("p", { class: "muted" }, "No snapshots yet."));
      return;
    }
    const children = new Map(); // a parent's name (null: none) -> the snapshots under it
    const names = new Set(snaps.map((s) => s.name));
    for (const s of snaps) {
      const parent = names.has(s.parent) ? s.parent : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    }
    const now = h("li", { class: "now" }, h("div", { class: "snap" }, h("span", { class: "name" }, "now"),
      h("span", { class: "muted" }, "the VM as it is")));
    const branch = (parent) => h("ul", { class: "tree" }, ...(children.get(parent) || []).map((s) =>
      h("li", { "data-snap": s.name }, this.item(s),
        children.has(s.name) || s.current ? h("ul", { class: "tree" },
          ...(children.has(s.name) ? branch(s.name).children : []), s.current ? now : null) : null)));
    const total = snaps.reduce((sum, s) => sum + s.size, 0);
    const root = branch(null);
    if (!snaps.some((s) => s.current)) root.append(now);
    this.tree.replaceChildren(
      h("p", { class: "muted" }, `${snaps.length} snapshot${snaps.length > 1 ? "s" : ""}, ${formatBytes(total)} on disk.`),
      h("ul", { class: "tree root", "aria-label": `Snapshots of ${this.name}` },
        h("li", {}, h("div", { class: "snap" }, h("span", { class: "name" }, this.name)), root)));
  }

  item(s) {
    const button = (label, handler, extra = {}) => {
      const b = h("button", { type: "button", class: "quiet", "aria-label": `${label} ${s.name}`, ...extra }, label);
      b.addEventListener("click", handler);
      return b;
    };
    const when = new Date(s.created * 1000).toLocaleString();
    const uses = [...s.forks.map((f) => `fork ${f}`), ...s.templates.map((t) => `template ${t}`)];
    return h("div", { class: "snap" },
      h("span", { class: "name" }, s.name),
      h("span", { class: "size", title: "bytes on disk" }, formatBytes(s.size)),
      h("span", { class: "muted" }, `${when}, ${s.memory ? "with memory" : "disk only"}${s.current ? ", current" : ""}` +
        (uses.length ? `; ${uses.join(", ")}` : "")),
      button("Restore", () => this.restore(s)),
      button("Fork", () => this.fork(s), { disabled: !s.memory, title: s.memory ? null : "a disk-only snapshot cannot be forked" }),
      button("Delete", () => this.remove(s), { class: "danger" }));
  }

  async restore(s) {
    if (!(await confirmAction(`Restore ${s.name}?`, `${this.name} goes back to this snapshot; what changed since is lost unless snapshotted.`, "Restore"))) return;
    try { await this.api.post(`${this.path}/${encodeURIComponent(s.name)}/restore`); } catch (e) { toast(`Restore: ${e.message}`); }
  }

  async fork(s) {
    const name = await promptText(`Fork ${this.name}@${s.name}`, "Name of the new VM", `${this.name}-fork`);
    if (!name) return;
    try {
      await this.api.post("/forks", { source: `${this.name}@${s.name}`, name });
      location.hash = `#/vm/${encodeURIComponent(name)}`;
    } catch (e) { toast(`Fork: ${e.message}`); }
  }

  async remove(s) {
    if (!(await confirmDelete(`snapshot ${s.name}`, `Its saved state (${formatBytes(s.size)}) goes for good; the VM and its other snapshots stay.`))) return;
    try { await this.api.delete(`${this.path}/${encodeURIComponent(s.name)}`); } catch (e) { toast(`Delete ${s.name}: ${e.message}`); }
    this.refresh();
  }
}
