// Images: the list (with remove), building tiny or debian with progress, and importing a
// disk or ISO file that is on the vmkit host.
import { h, table, row, field, options, toast, confirmDelete, formatBytes, formatTime } from "./dom.js";
import { OperationView } from "./ops.js";

export function show(main, ctx) {
  const { api } = ctx;
  const list = h("div");
  const views = [];
  const refresh = async () => {
    let images;
    try { images = await api.get("/images"); } catch (e) { list.replaceChildren(h("p", { class: "error" }, e.message)); return; }
    list.replaceChildren(images.length ? table("images", ["Name", "Kind", "Disk", "On disk", "Created", "Description", ""],
      images.map((i) => row(i.name, [["Name", i.name], ["Kind", `${i.kind} (${i.format})`], ["Disk", i.disk],
        ["On disk", formatBytes(i.size)], ["Created", formatTime(i.created)], ["Description", i.description || "–"],
        ["", removeButton(i)]])))
      : h("p", { class: "muted" }, "No images yet: build tiny or debian below, or import a file."));
  };
  const removeButton = (image) => {
    const button = h("button", { type: "button", class: "danger", "aria-label": `Remove ${image.name}` }, "Remove");
    button.addEventListener("click", async () => {
      if (!(await confirmDelete(`image ${image.name}`, "VMs made from it keep running; new ones cannot use it."))) return;
      try { await api.delete(`/images/${encodeURIComponent(image.name)}`); } catch (e) { toast(`Remove ${image.name}: ${e.message}`); }
      refresh();
    });
    return button;
  };

  main.replaceChildren(h("h1", {}, "Images"), h("section", { class: "card", "aria-label": "Images" }, list),
    buildForm(api, views, refresh), importForm(api, views, refresh));
  refresh();
  return () => views.forEach((v) => v.stop());
}

// One form that starts an operation: its fields, a submit button, the operation's progress
// and a button that cancels it; ``onEnd`` runs once it has ended, well or not.
function operationForm(api, { id, title, boxes, label, start, onEnd }, views) {
  const op = new OperationView(title);
  views.push(op);
  const submit = h("button", { type: "submit" }, label);
  const cancel = h("button", { type: "button", class: "quiet", hidden: true }, "Cancel");
  const form = h("form", { class: "form card", id, novalidate: true }, h("h2", {}, title), ...boxes,
    h("div", { class: "buttons" }, submit, cancel), op.el);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const started = await start();
      cancel.hidden = false;
      cancel.onclick = () => api.delete(`/operations/${started.id}`).catch((e) => toast(e.message));
      await op.follow(api, started);
    } catch (e) {
      op.say(e.message);
      op.text.classList.add("error");
    } finally {
      submit.disabled = false;
      cancel.hidden = true;
      onEnd();
    }
  });
  return form;
}

function buildForm(api, views, refresh) {
  const [name, nameInput] = field("build-name", "Name", "tiny or debian, or a name of your own.", { value: "debian" });
  const [builder, builderSelect] = field("build-builder", "Builder", "What to build.", {}, "select");
  const [release, releaseInput] = field("build-release", "Debian release", "", { value: "bookworm" });
  const [size, sizeInput] = field("build-size", "Disk size", "Debian only.", { value: "4G" });
  const [packages, packagesInput] = field("build-packages", "More packages", "Debian only, comma-separated.", { placeholder: "nginx, git" });
  const minimal = h("input", { id: "build-minimal", type: "checkbox" });
  const force = h("input", { id: "build-force", type: "checkbox" });
  options(builderSelect, [["", "as named (tiny or debian)"], "tiny", "debian"], "");
  const boxes = [h("div", { class: "row" }, name, builder), h("div", { class: "row" }, release, size), packages,
    h("label", { for: "build-minimal" }, minimal, " minimal: without ssh and cloud-init (a quick build)"),
    h("label", { for: "build-force" }, force, " rebuild if it exists")];
  return operationForm(api, { id: "build", title: "Build an image", boxes, label: "Build", onEnd: refresh,
    start: () => {
      named(nameInput);
      const q = new URLSearchParams({ force: force.checked, release: releaseInput.value.trim(),
        size: sizeInput.value.trim(), packages: packagesInput.value.trim(), minimal: minimal.checked });
      if (builderSelect.value) q.set("builder", builderSelect.value);
      return api.post(`/images/${encodeURIComponent(nameInput.value.trim())}/build?${q}`);
    } }, views);
}

function importForm(api, views, refresh) {
  const [name, nameInput] = field("import-name", "Name", "The image's name in vmkit.", { autocomplete: "off" });
  const [path, pathInput] = field("import-path", "File on the vmkit host", "Absolute path of a qcow2, raw, vmdk, vdi or ISO file, or a block device.",
    { placeholder: "/srv/isos/alpine.iso", autocomplete: "off" });
  return operationForm(api, { id: "import", title: "Import a disk or ISO", boxes: [h("div", { class: "row" }, name, path)],
    label: "Import", onEnd: refresh,
    start: () => {
      named(nameInput);
      return api.post(`/images/${encodeURIComponent(nameInput.value.trim())}/import`, { path: pathInput.value.trim() });
    } }, views);
}

function named(input) {
  if (!input.value.trim()) {
    input.focus();
    throw new Error("Give the image a name.");
  }
}
