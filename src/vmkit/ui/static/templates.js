// Templates: snapshots kept for forking ('vmkit template'); 'Fork from' in the create form
// and --fast use them.
import { h, field, formatBytes, formatTime } from "./dom.js";
import { resourcePage } from "./resource.js";

export function show(main, ctx) {
  const [name, nameInput] = field("tpl-name", "Name", "Letters, digits and '-'.", { autocomplete: "off" });
  const [source, sourceInput] = field("tpl-source", "From", "VM@SNAPSHOT (a memory snapshot), or a running VM (snapshotted now).",
    { placeholder: "web@snap1", autocomplete: "off" });
  resourcePage(main, ctx, {
    title: "Templates", path: "/templates", noun: "template",
    intro: "A template is a VM's saved memory and disk that new VMs fork from in about a second.",
    columns: ["Name", "Image", "CPUs", "Memory", "Made from", "Forks", "Size", "Created"],
    cells: (t) => [t.name, t.image || "blank disk", String(t.cpus), `${t.memory_mib}M`, t.source || "–",
      t.forks.length ? t.forks.join(", ") : "–", formatBytes(t.size), formatTime(t.created)],
    empty: "No templates yet. Make one below, or create a VM with Fast ticked.",
    deleteText: (t) => (t.forks.length ? `VMs forked from it (${t.forks.join(", ")}) keep running; it goes once they are gone.`
      : "Its memory and disk go for good."),
    form: {
      id: "tpl-create", title: "Make a template", label: "Make template", path: "/templates",
      boxes: [h("div", { class: "row" }, name, source)],
      body: () => ({ name: nameInput.value.trim(), source: sourceInput.value.trim() }),
    },
  });
}
