// Small DOM helpers: elements without innerHTML (names and messages are never parsed as
// HTML), the confirmation dialog, the toast, and time formatting.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A modal dialog (keyboard: Tab between its buttons, Esc cancels); resolves true for OK.
export function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// Ask for one line of text in the same dialog; resolves the text, or null when cancelled.
export function promptText(title, label, value = "") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const input = h("input", { id: "prompt-input", value, autocomplete: "off" });
  document.getElementById("confirm-text").replaceChildren(
    h("label", { for: "prompt-input" }, label), input);
  document.getElementById("confirm-ok").textContent = "OK";
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? input.value.trim() : null);
    }, { once: true });
  });
}

let toastTimer = null;
export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

export function formatUptime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  return mm ? `${mm}m ${s % 60}s` : `${s}s`;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)}${units[i]}`;
}

export function formatTime(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
}

// A usage bar: a <meter> (read out by screen readers) and the figures beside it.
export function usageBar(id, label, used, total, text = null) {
  const percent = total ? Math.round((100 * used) / total) : 0;
  return h("div", { class: "usage" },
    h("label", { for: id }, label),
    h("meter", { id, min: 0, max: total || 1, value: used, low: total * 0.7, high: total * 0.9,
                 optimum: 0 }),
    h("span", { class: "muted" }, text ?? `${formatBytes(used)} of ${formatBytes(total)} (${percent}%)`));
}

// A table with a header row; rows are <tr> elements (each cell labelled for narrow windows).
export function table(cls, headings, rows) {
  return h("table", { class: `list ${cls}` },
    h("thead", {}, h("tr", {}, ...headings.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows));
}

export function row(key, cells) {
  // cells: [label, content] pairs; the first is the row's header.
  return h("tr", { "data-key": key }, ...cells.map(([label, content], i) =>
    h(i ? "td" : "th", { scope: i ? null : "row", "data-label": label }, content)));
}

// A labelled form field: [the field's div, its control]. kind: input | select | textarea.
export function field(id, label, hint, attrs = {}, kind = "input") {
  const control = h(kind, { id, name: id, "aria-describedby": `${id}-hint ${id}-error`, ...attrs });
  const box = h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("span", { id: `${id}-hint`, class: "hint" }, hint) : null,
    h("span", { id: `${id}-error`, class: "error" }));
  return [box, control];
}

export function options(select, values, selected) {
  select.replaceChildren(...values.map((v) => {
    const [value, text] = Array.isArray(v) ? v : [v, v];
    return h("option", { value, selected: value === selected }, text);
  }));
}

// Ask before a destructive action; resolves true when confirmed.
export function confirmDelete(what, consequence) {
  return confirmAction(`Delete ${what}?`, consequence, "Delete");
}
