// Backups ('vmkit backup'): back a VM up into a borg repository, restore, verify, remove.
// Backing up, restoring and verifying are operations: one progress line and a Cancel button.
import { h, table, row, toast, field, formatBytes, promptText, confirmDelete } from "./dom.js";
import { OperationView } from "./ops.js";

export function show(main, ctx) {
  const { api } = ctx;
  const list = h("div", { "aria-live": "polite" });
  const [vmBox, vmInput] = field("backup-vm", "VM", "Backed up while it runs; incremental after the first.", { autocomplete: "off" });
  const memory = h("input", { id: "backup-memory", type: "checkbox" });
  const view = new OperationView("Backup operation");
  const cancel = h("button", { type: "button", class: "quiet", id: "backup-cancel", hidden: true }, "Cancel");
  view.el.id = "backup-op";
  const act = async (what, work) => {
    try {
      const op = await work();
      if (op && op.state === "running") {  // an operation: follow it to its end
        cancel.hidden = false;
        cancel.onclick = () => api.delete(`/operations/${op.id}`).catch((e) => toast(e.message));
        const done = await view.follow(api, op);
        toast(done.state === "failed" ? done.error : done.message);
      } else {
        toast(what);
      }
    } catch (e) { toast(e.message); }
    cancel.hidden = true;
    refresh();
  };
  const button = (label, onClick, cls = "") => {
    const b = h("button", { type: "button", class: cls }, label);
    b.addEventListener("click", onClick);
    return b;
  };
  const actions = (b) => h("span", {},
    button("Restore", async () => {
      const name = await promptText(`Restore ${b.id}`, "New VM (empty: roll its stopped VM back)", `${b.vm}-restored`);
      if (name === null) return;
      act(`Restored ${b.id}`, () => api.post(`/backups/${encodeURIComponent(b.id)}/restore`, { name: name || null, repo: b.repo }));
    }),
    button("Verify", () => act(`${b.id}: intact`, () => api.post(`/backups/${encodeURIComponent(b.id)}/verify?repo=${encodeURIComponent(b.repo)}`))),
    button("Delete", async () => {
      if (await confirmDelete(`backup ${b.id}`, "It goes from its repository; the others stay whole.")) {
        act(`Deleted ${b.id}`, () => api.delete(`/backups/${encodeURIComponent(b.id)}?repo=${encodeURIComponent(b.repo)}`));
      }
    }, "danger"));
  async function refresh() {
    try {
      const backups = await api.get("/backups");
      list.replaceChildren(backups.length ? table("backups", ["ID", "VM", "Time", "Size", "Added", "Kind", "Memory", "Repository", ""],
        backups.map((b) => row(b.id, [["ID", b.id], ["VM", b.vm ?? "–"], ["Time", b.time.slice(0, 19)], ["Size", formatBytes(b.size)],
          ["Added", b.deduplicated_size == null ? "–" : formatBytes(b.deduplicated_size)], ["Kind", b.kind ?? "–"],
          ["Memory", b.memory ? "yes" : "no"], ["Repository", b.repo], ["", actions(b)]])))
        : h("p", { class: "muted" }, "No backups yet. Add a repository with 'vmkit backup repo add NAME PATH'."));
    } catch (e) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  }
  const form = h("form", { id: "backup-create", class: "form card" }, h("h2", {}, "Back up a VM"), vmBox,
    h("label", { for: "backup-memory" }, memory, " with memory: restored, it runs on from this moment"),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Back up")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(`Backing up ${vmInput.value.trim()}: see Events`, () => api.post("/backups", { vm: vmInput.value.trim(), memory: memory.checked }));
  });
  main.replaceChildren(h("h1", {}, "Backups"), list, h("div", { class: "buttons" }, view.el, cancel), form);
  refresh();
}
