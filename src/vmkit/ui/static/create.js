// The create form, at parity with 'vmkit run': boot an image (built on first use), fork a
// ready template of it (--fast), a template or VM@SNAPSHOT (--from), networks, ISO,
// firmware, cloud-init (ssh key, user-data, env), disposable, I/O limits. The name is
// optional, as in the CLI. It posts to /v1/runs, the CLI's own path, and follows the run.
import { h, field, options } from "./dom.js";
import { OperationView } from "./ops.js";

const NO_IMAGE = ""; // a blank disk, installed from the ISO

// Which field an API message is about (messages name the field they reject).
const RULES = [
  ["ports", /port|forward/], ["name", /vm name|a vm named|^name\b|hostname/],
  ["cpus", /^cpus\b|virtual cpu/], ["memory", /^memory\b|more than this host/],
  ["disk", /^disk\b|disk size/], ["io_limit", /io.limit|iops|throttl/],
  ["source", /template|snapshot|^from\b|source|fork/], ["cdrom", /iso|cd\b|cdrom/],
  ["firmware", /firmware|uefi|ovmf/], ["ssh_keys", /ssh|public key/],
  ["user_data", /user.data|cloud-config/], ["env", /environment|env\b/],
  ["networks", /network|nic/], ["image", /image/], ["display", /display/],
];

function fieldOf(message) {
  const m = message.toLowerCase();
  return RULES.find(([, re]) => re.test(m))?.[0] || null;
}

function parseEnv(text) {
  const env = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at < 1) throw Object.assign(new Error(`'${line}' is not KEY=VALUE`), { field: "env" });
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

export function show(main, ctx) {
  const c = {};
  const f = (id, ...args) => { const [box, control] = field(id, ...args); c[id] = control; return box; };
  const check = (id, label, hint) => {
    c[id] = h("input", { id, type: "checkbox", "aria-describedby": `${id}-hint` });
    return h("div", { class: "field check" }, h("label", { for: id }, c[id], ` ${label}`),
                     h("span", { id: `${id}-hint`, class: "hint" }, hint));
  };
  const nets = h("fieldset", { class: "field", id: "networks", "aria-describedby": "networks-hint networks-error" },
    h("legend", {}, "Networks"));
  const netHint = h("span", { id: "networks-hint", class: "hint" },
    "One network card each, in this order. None ticked: no network card.");
  const netError = h("span", { id: "networks-error", class: "error" });
  const op = new OperationView("Progress of the run");
  const formError = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Create and boot");
  const form = h("form", { class: "form card", id: "create", novalidate: true },
    h("h1", {}, "Create a VM"),
    f("name", "Name", "Optional: a name such as brave-otter is made up. Letters, digits and '-'; also the guest's hostname.",
      { autocomplete: "off", placeholder: "generated" }),
    h("div", { class: "row" },
      f("image", "Image", "tiny and debian are built on first use.", {}, "select"),
      f("source", "Fork from", "A template or VM@SNAPSHOT instead of booting ('vmkit fork').",
        { list: "sources", autocomplete: "off", placeholder: "boot the image" })),
    h("datalist", { id: "sources" }),
    check("fast", "Fast: fork a ready template of the image", "Made on first use (one boot and a snapshot); then a VM is ready in about a second."),
    h("div", { class: "row" },
      f("cpus", "CPUs", "1 to 64.", { type: "number", value: "1", min: 1, max: 64, inputmode: "numeric" }),
      f("memory", "Memory", "e.g. 256M or 1G.", { value: "256M" }),
      f("disk", "Disk", "e.g. 2G; empty: the image's size.", { placeholder: "image's size" })),
    f("ports", "Port forwards", "[ADDR:]HOST:GUEST[/udp], comma-separated, e.g. 8080:80, 2222:22.",
      { placeholder: "8080:80" }),
    h("div", { class: "field" }, nets, netHint, netError),
    h("details", { id: "more" }, h("summary", {}, "More options: ISO, firmware, cloud-init, limits"),
      h("div", { class: "form-inner" },
        h("div", { class: "row" },
          f("cdrom", "ISO in the CD drive", "An ISO image, or the path of an .iso on the vmkit host (imported on first use).",
            { list: "isos", autocomplete: "off", placeholder: "none" }),
          f("firmware", "Firmware", "For installers and imported disks.", {}, "select"),
          f("display", "Display", "vnc: a screen shown on the VM's page.", {}, "select")),
        h("datalist", { id: "isos" }),
        f("ssh_keys", "SSH public key", "cloud-init images: what the user 'debian' accepts (ssh-ed25519 AAAA…).",
          { rows: 2, spellcheck: "false" }, "textarea"),
        f("user_data", "User data", "cloud-init images: a #cloud-config document, checked before boot.",
          { rows: 4, spellcheck: "false", placeholder: "#cloud-config" }, "textarea"),
        f("env", "Environment", "cloud-init images: KEY=VALUE, one a line.", { rows: 2, spellcheck: "false" }, "textarea"),
        h("div", { class: "row" },
          f("io_limit", "Disk I/O limit", "Operations and/or bytes per second: 300iops, 20M, 300iops,20M.", { placeholder: "none" }),
          f("restart", "Restart by itself", "on-failure: after a crash; always: also after a shutdown.", {}, "select")),
        check("auto_remove", "Remove when it stops (--rm)", "Its disk goes with it."),
        check("disposable", "Disposable", "For untrusted software: no network card unless one is ticked above, and removed with all it wrote when it stops."))),
    formError, h("div", { class: "buttons" }, submit, h("a", { class: "button quiet", href: "#/" }, "Cancel")),
    op.el);
  main.replaceChildren(form);
  c.name.focus();
  options(c.firmware, ["bios", "uefi"], "bios");
  options(c.display, ["none", "vnc"], "none");
  options(c.restart, ["no", "on-failure", "always"], "no");
  fill(ctx.api, c, nets, form);
  // As --disposable: no network card unless one is asked for.
  c.disposable.addEventListener("change", () => {
    if (c.disposable.checked) for (const box of nets.querySelectorAll("input")) box.checked = false;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.setAttribute("aria-invalid", "false");
    for (const el of form.querySelectorAll(".error")) el.textContent = "";
    let body;
    try {
      body = requestOf(c, nets);
    } catch (e) {
      return showError(e.field, e.message);
    }
    submit.disabled = true;
    op.say(`Starting ${body.name || "a VM"}…`);
    try {
      const started = await ctx.api.post("/runs", body);
      const done = await op.follow(ctx.api, started);
      if (done.state === "succeeded") location.hash = `#/vm/${encodeURIComponent(done.target)}`;
      else showError(fieldOf(done.error || ""), done.error);
    } catch (e) {
      op.say("");
      showError(e.status ? fieldOf(e.message) : null, e.message);
    } finally {
      submit.disabled = false;
    }
  });

  function showError(id, message) {
    const control = id && (c[id] || document.getElementById(id));
    const error = id && document.getElementById(`${id}-error`);
    if (!control || !error) {
      formError.textContent = message;
      return;
    }
    if (control.closest("details")) control.closest("details").open = true;
    error.textContent = message;
    control.setAttribute("aria-invalid", "true");
    (control.tagName === "FIELDSET" ? control.querySelector("input") : control)?.focus();
  }
  return () => op.stop();
}

function requestOf(c, nets) {
  const v = (id) => c[id].value.trim();
  const cpus = Number(v("cpus"));
  const networks = [...nets.querySelectorAll("input:checked")].map((i) => i.value);
  return {
    name: v("name") || null, image: v("image") || null, source: v("source") || null,
    fast: c.fast.checked, cpus: Number.isInteger(cpus) && v("cpus") !== "" ? cpus : v("cpus"),
    memory: v("memory"), disk: v("disk") || null,
    ports: v("ports") ? v("ports").split(/[\s,]+/).filter(Boolean) : [],
    // nothing ticked: no network card (an empty list), as --network none
    network: networks, cdrom: v("cdrom") || null, firmware: v("firmware"),
    display: v("display"), ssh_keys: v("ssh_keys") || null, user_data: c.user_data.value.trim() ? c.user_data.value : null,
    env: parseEnv(c.env.value), io_limit: v("io_limit") || null, restart: v("restart"),
    auto_remove: c.auto_remove.checked, disposable: c.disposable.checked,
  };
}

async function fill(api, c, nets, form) {
  const [images, networks, templates] = await Promise.all(["/images", "/networks", "/templates"]
    .map((path) => api.get(path).catch(() => [])));
  const disks = images.filter((i) => i.kind !== "iso").map((i) => i.name);
  for (const builtin of ["debian", "tiny"]) if (!disks.includes(builtin)) disks.unshift(builtin);
  options(c.image, [...disks, [NO_IMAGE, "none: a blank disk (install from the ISO)"]], "tiny");
  form.querySelector("#isos").replaceChildren(
    ...images.filter((i) => i.kind === "iso").map((i) => h("option", { value: i.name })));
  form.querySelector("#sources").replaceChildren(...templates.map((t) => h("option", { value: t.name },
    `template ${t.name}`)));
  const names = [["nat", "nat: outbound access"], ["restricted", "restricted: no way out, port forwards only"],
    ...networks.map((n) => [n.name, `${n.name}: private ${n.subnet}${n.isolated ? ", isolated" : ""}`])];
  nets.append(...names.map(([value, text]) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "network", value, checked: value === "nat" }), ` ${text}`)));
}
