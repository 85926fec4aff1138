// Long operations (an image build or import, a run): follow one to its end, showing its
// progress in a <progress> and a status line, as 'vmkit image build' does on a terminal.
import { h } from "./dom.js";

const POLL = 500; // ms between two readings of a running operation

export class OperationView {
  constructor(label) {
    this.bar = h("progress", { max: 1, value: 0, "aria-label": label, hidden: true });
    this.text = h("p", { role: "status", "aria-live": "polite", class: "muted op-status" });
    this.el = h("div", { class: "op" }, this.bar, this.text);
    this.stopped = false;
  }

  say(text) { this.text.textContent = text; }

  // Resolves the finished operation (state succeeded or failed).
  async follow(api, op) {
    this.bar.hidden = false;
    this.el.dataset.op = op.id;
    while (op.state === "running" && !this.stopped) {
      this.bar.value = op.progress;
      this.say(`${Math.round(op.progress * 100)}% ${op.message}`);
      await new Promise((r) => setTimeout(r, POLL));
      op = await api.get(`/operations/${op.id}`);
    }
    this.bar.hidden = true;
    this.el.dataset.state = op.state;
    this.say(op.state === "failed" ? op.error : op.message || "Done.");
    this.text.classList.toggle("error", op.state === "failed");
    return op;
  }

  stop() { this.stopped = true; }
}
