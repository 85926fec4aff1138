// A page of one kind of thing vmkitd keeps (networks, templates...): its list with a Delete
// button on each, and a form that creates one. Pages describe theirs and call resourcePage.
import { h, table, row, toast, confirmDelete } from "./dom.js";

// spec: { title, path, noun, columns: [label...], cells(item) -> [content...], empty,
//         deleteText(item), form: { id, title, boxes, label, body() (may be async), done } | null, intro }
export function resourcePage(main, ctx, spec) {
  const { api } = ctx;
  const list = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    let items;
    try {
      items = await api.get(spec.path);
    } catch (e) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
      return;
    }
    list.replaceChildren(items.length
      ? table(spec.path.slice(1), [...spec.columns, ""], items.map((item) => row(item.name,
        [...spec.cells(item).map((content, i) => [spec.columns[i], content]), ["", deleteButton(item)]])))
      : h("p", { class: "muted" }, spec.empty));
  };
  const deleteButton = (item) => {
    const button = h("button", { type: "button", class: "danger", "aria-label": `Delete ${item.name}` }, "Delete");
    button.addEventListener("click", async () => {
      if (!(await confirmDelete(`${spec.noun} ${item.name}`, spec.deleteText(item)))) return;
      try {
        await api.delete(`${spec.path}/${encodeURIComponent(item.name)}`);
      } catch (e) {
        toast(`Delete ${item.name}: ${e.message}`);
      }
      refresh();
    });
    return button;
  };
  main.replaceChildren(h("h1", {}, spec.title), spec.intro ? h("p", { class: "muted" }, spec.intro) : "",
    h("section", { class: "card", "aria-label": spec.title }, list), spec.form ? createForm(api, spec.form, refresh) : "");
  refresh();
}

function createForm(api, form, refresh) {
  const error = h("p", { class: "error form-error", role: "alert" });
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, form.label);
  const el = h("form", { class: "form card", id: form.id, novalidate: true },
    h("h2", {}, form.title), ...form.boxes, error, h("div", { class: "buttons" }, submit), status);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    status.textContent = "Working…";
    try {
      const made = await api.post(form.path, await form.body());
      status.textContent = `${form.done ?? "Made"} ${made.name}.`;
      el.reset();
      refresh();
    } catch (e) {
      status.textContent = "";
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  });
  return el;
}
