// The VM page: facts and actions, the serial console (xterm.js), the VNC display (noVNC),
// live charts of the counters 'vmkit stats' shows, snapshots, and migration.
import { Terminal } from "./vendor/xterm/xterm.mjs";
import { FitAddon } from "./vendor/xterm/addon-fit.mjs";
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { h, confirmAction, promptText, toast, formatBytes, formatUptime } from "./dom.js";

const STATS_EVERY = 2000; // ms between two readings of the charts' counters
const POINTS = 90; // readings kept on a chart (3 minutes)
const LIVE = ["running", "paused"];

export function showVm(main, name, ctx) {
  const page = new VmPage(main, name, ctx);
  page.open();
  return () => page.close();
}

class VmPage {
  constructor(main, name, ctx) {
    Object.assign(this, { main, name, ctx, api: ctx.api });
    this.cleanups = [];
    this.vm = null;
    this.gone = false;
  }

  async open() {
    try {
      this.vm = await this.api.get(`/vms/${this.name}`);
    } catch (e) {
      this.main.replaceChildren(h("div", { class: "card" },
        h("h1", {}, this.name),
        h("p", { class: "banner", role: "alert" }, e.status === 404
          ? `There is no VM named ${this.name}; it may have been deleted.` : e.message),
        h("a", { href: "#/" }, "Back to the list")));
      return;
    }
    this.render();
    this.cleanups.push(this.ctx.listen((name, vm, what) => {
      if (name !== this.name) return;
      if (what === "snapshots") this.snapshots.refresh();
      else if (what === "vm") this.update(vm);
    }));
  }

  close() {
    for (const fn of this.cleanups.splice(0)) fn();
  }

  render() {
    this.head = h("div", { class: "vm-head" });
    this.banner = h("div", { role: "alert" });
    this.facts = h("dl", { class: "facts" });
    const consoleCard = h("section", { class: "card", "aria-labelledby": "console-h" },
      h("h2", { id: "console-h" }, "Serial console"));
    this.console = new Console(consoleCard, this.api, this.name);
    this.cleanups.push(() => this.console.close());
    const statsCard = h("section", { class: "card", "aria-labelledby": "stats-h" },
      h("h2", { id: "stats-h" }, "Activity"));
    this.charts = new Charts(statsCard, this.api, this.name);
    this.cleanups.push(() => this.charts.close());
    const snapCard = h("section", { class: "card", "aria-labelledby": "snap-h" },
      h("h2", { id: "snap-h" }, "Snapshots"));
    this.snapshots = new Snapshots(snapCard, this.api, this.name);
    this.migrateCard = h("section", { class: "card", "aria-labelledby": "migrate-h", hidden: true });
    const sections = [consoleCard];
    if (this.vm.display === "vnc") {
      const displayCard = h("section", { class: "card", "aria-labelledby": "display-h" },
        h("h2", { id: "display-h" }, "Display (VNC)"));
      this.display = new Display(displayCard, this.api, this.name);
      this.cleanups.push(() => this.display.close());
      sections.push(displayCard);
    }
    this.main.replaceChildren(this.head, this.banner,
      h("section", { class: "card", "aria-label": "Details" }, this.facts),
      ...sections, statsCard, snapCard, this.migrateCard);
    this.update(this.vm);
    this.snapshots.refresh();
    this.setUpMigration();
    const timer = setInterval(() => this.renderFacts(), 1000); // uptime, on screen only
    this.cleanups.push(() => clearInterval(timer));
  }

  update(vm) {
    if (!vm) {
      this.gone = true;
      this.banner.className = "banner";
      this.banner.textContent = `VM ${this.name} was deleted. `;
      this.banner.append(h("a", { href: "#/" }, "Back to the list"));
      this.head.querySelector(".buttons")?.remove();
      this.console.vmChanged(null);
      this.charts.vmChanged(null);
      this.display?.vmChanged(null);
      return;
    }
    this.vm = vm;
    this.head.replaceChildren(h("h1", {}, vm.name),
      h("span", { class: `state state-${vm.state}`, "data-state": vm.state }, vm.state),
      this.ctx.actionButtons(vm, { onDone: (action) => {
        if (action === "delete") location.hash = "#/";
      } }));
    this.renderFacts();
    this.console.vmChanged(vm);
    this.charts.vmChanged(vm);
    this.display?.vmChanged(vm);
  }

  renderFacts() {
    const vm = this.vm;
    if (!vm || this.gone) return;
    const ips = this.ctx.state.ips.get(vm.name);
    const rows = [
      ["Image", vm.image], ["CPUs", vm.cpus], ["Memory", vm.memory],
      ["Disk", vm.disk || "the image's size"], ["Network", (vm.networks.length ? vm.networks : ["none"]).join(", ")],
      ["IPs", vm.state === "running" && ips?.ips.length ? ips.ips.join(", ") : "–"],
      ["Ports", vm.ports.map((p) => `${p.host_addr}:${p.host_port}→${p.guest_port}/${p.proto}`).join(", ") || "–"],
      ["Uptime", LIVE.includes(vm.state) && vm.started ? formatUptime(Date.now() / 1000 - vm.started) : "–"],
      ["Snapshot", vm.snapshot || "–"], ["Forked from", vm.forked_from || "–"],
    ];
    if (vm.reason) rows.push(["Reason", vm.reason]);
    this.facts.replaceChildren(...rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v)))));
  }

  async setUpMigration() {
    const hosts = await this.api.get("/hosts").catch(() => []);
    if (!hosts.length) return; // the button appears once remote hosts exist
    const select = h("select", { id: "migrate-host" },
      ...hosts.map((x) => h("option", { value: x.name }, `${x.name} (${x.url})`)));
    const status = h("p", { role: "status", "aria-live": "polite", class: "muted" });
    const button = h("button", { type: "button" }, "Migrate");
    button.addEventListener("click", async () => {
      if (!(await confirmAction(`Migrate ${this.name}?`,
        `The VM moves, running, to ${select.value}; it leaves this host.`, "Migrate"))) return;
      button.disabled = true;
      try {
        let op = await this.api.post(`/vms/${this.name}/migrate`, { host: select.value });
        while (op.state === "running") {
          status.textContent = `${Math.round(op.progress * 100)}% ${op.message}`;
          await new Promise((r) => setTimeout(r, 1000));
          op = await this.api.get(`/operations/${op.id}`);
        }
        status.textContent = op.state === "failed" ? `Migration failed: ${op.error}` : op.message;
      } catch (e) {
        status.textContent = e.message;
      } finally {
        button.disabled = false;
      }
    });
    this.migrateCard.replaceChildren(h("h2", { id: "migrate-h" }, "Migrate"),
      h("div", { class: "inline" },
        h("div", { class: "field" }, h("label", { for: "migrate-host" }, "To host"), select),
        button), status);
    this.migrateCard.hidden = false;
  }
}

// --- serial console -----------------------------------------------------------------------

class Console {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.status = h("p", { class: "console-status", role: "status", "aria-live": "polite" });
    this.el = h("div", { class: "terminal", "aria-label": `Serial console of ${name}` });
    card.append(h("p", { class: "muted" },
      "Click the console and type; press Enter for a prompt. Output streams live."),
      this.el, this.status);
    this.term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000,
                               screenReaderMode: false });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.el);
    this.fit.fit();
    // The terminal follows its box: a narrow window or a resized one refits it.
    this.resizer = new ResizeObserver(() => { try { this.fit.fit(); } catch (e) { /* hidden */ } });
    this.resizer.observe(this.el);
    const encoder = new TextEncoder();
    this.term.onData((data) => {
      if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encoder.encode(data));
    });
    this.ws = null;
    this.delay = 1000;
    this.closed = false;
    this.running = false;
  }

  vmChanged(vm) {
    this.running = !!vm && ["running", "paused", "starting"].includes(vm.state);
    if (!vm) {
      this.close();
      this.setStatus("The VM was deleted.");
    } else if (!this.running) {
      this.setStatus(`The VM is ${vm.state}; the console connects when it runs.`);
    } else if (!this.ws) {
      this.connect();
    }
  }

  setStatus(text) { this.status.textContent = text; }

  connect() {
    clearTimeout(this.timer);
    if (this.closed || !this.running || this.ws) return;
    this.setStatus("Connecting…");
    const ws = this.api.websocket(`/vms/${this.name}/console`);
    this.ws = ws;
    this.el.vmkitSocket = ws; // lets the end-to-end test drop the connection
    ws.onopen = () => {
      this.delay = 1000;
      this.setStatus("Connected.");
      this.el.dataset.connected = "1";
    };
    ws.onmessage = (event) => this.term.write(new Uint8Array(event.data));
    ws.onclose = (event) => {
      this.ws = null;
      this.el.dataset.connected = "";
      if (this.closed) return;
      if (event.code === 4401) {
        this.setStatus("vmkitd refused the token; log in again.");
      } else if (event.code === 4404) {
        this.setStatus("The VM no longer exists.");
      } else if (!this.running) {
        this.setStatus("The VM stopped; the console connects when it runs again.");
      } else {
        this.setStatus(`Console disconnected; reconnecting in ${this.delay / 1000} s…`);
        this.timer = setTimeout(() => this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, 10000);
      }
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.resizer.disconnect();
    this.ws?.close(1000);
  }
}

// --- VNC display ------------------------------------------------------------------------

class Display {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.status = h("p", { class: "console-status", role: "status", "aria-live": "polite" });
    this.screen = h("div", { class: "screen", id: "vnc-screen", "aria-label": `Display of ${name}` });
    card.append(this.screen, this.status);
    this.rfb = null;
    this.closed = false;
    this.delay = 1000;
  }

  vmChanged(vm) {
    this.running = !!vm && LIVE.includes(vm.state);
    if (!vm) {
      this.close();
      this.status.textContent = "The VM was deleted.";
    } else if (!this.running) {
      this.status.textContent = `The VM is ${vm.state}; the display connects when it runs.`;
    } else if (!this.rfb) {
      this.connect();
    }
  }

  async connect() {
    clearTimeout(this.timer);
    if (this.closed || !this.running || this.rfb) return;
    this.status.textContent = "Connecting…";
    this.rfb = "connecting";
    try {
      const { default: RFB } = await import("./vendor/novnc/core/rfb.js");
      const info = await this.api.get(`/vms/${this.name}/display`);
      const rfb = new RFB(this.screen, this.api.websocketUrl(`/vms/${this.name}/vnc`), {
        wsProtocols: ["vmkit", `bearer.${this.api.token}`],
        credentials: { password: info.password },
      });
      rfb.scaleViewport = true;
      rfb.addEventListener("connect", () => {
        this.delay = 1000;
        this.status.textContent = "Connected.";
        this.screen.dataset.connected = "1";
      });
      rfb.addEventListener("credentialsrequired", () => rfb.sendCredentials({ password: info.password }));
      rfb.addEventListener("securityfailure", (e) => {
        this.status.textContent = `The VNC server refused: ${e.detail.reason || e.detail.status}`;
      });
      rfb.addEventListener("disconnect", () => this.dropped());
      this.rfb = rfb;
    } catch (e) {
      this.rfb = null;
      this.status.textContent = e.message;
    }
  }

  dropped() {
    this.rfb = null;
    this.screen.dataset.connected = "";
    if (this.closed || !this.running) return;
    this.status.textContent = `Display disconnected; reconnecting in ${this.delay / 1000} s…`;
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 10000);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.rfb && this.rfb !== "connecting") this.rfb.disconnect();
  }
}

// --- charts ---------------------------------------------------------------------------------

const CHARTS = [
  // [title, series labels, value(s) from two readings, format]
  ["CPU", ["% of one CPU"], (s) => [s.cpu_percent], (v) => `${v.toFixed(1)}%`],
  ["Memory", ["resident", "limit"], (s) => [s.memory_rss_bytes, s.memory_limit_bytes], formatBytes],
  ["Disk", ["read/s", "write/s"], (s, p, dt) => [rate(s, p, "disk_read_bytes", dt),
                                                 rate(s, p, "disk_write_bytes", dt)], (v) => `${formatBytes(v)}/s`],
  ["Network", ["received/s", "sent/s"], (s, p, dt) => [rate(s, p, "net_rx_bytes", dt),
                                                       rate(s, p, "net_tx_bytes", dt)], (v) => `${formatBytes(v)}/s`],
];
const COLORS = ["#1f5fbf", "#b42318"];

function rate(now, before, key, dt) {
  if (!before || now[key] == null || before[key] == null || dt <= 0) return null;
  return Math.max(0, (now[key] - before[key]) / dt);
}

class Charts {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.grid = h("div", { class: "charts" });
    this.note = h("p", { class: "muted" }, "The counters of 'vmkit stats', read every 2 s while the VM runs.");
    card.append(this.note, this.grid);
    this.charts = CHARTS.map(([title, labels, pick, fmt]) => this.makeChart(title, labels, pick, fmt));
    this.previous = null;
    this.resizer = new ResizeObserver(() => this.charts.forEach((c) => c.resize()));
    this.resizer.observe(this.grid);
  }

  makeChart(title, labels, pick, fmt) {
    const box = h("div");
    const summary = h("p", { class: "muted" }, "–");
    this.grid.append(h("figure", { class: "chart", style: "margin:0" },
      h("h3", {}, title), box, h("figcaption", {}, summary)));
    const data = [[], ...labels.map(() => [])];
    const plot = new uPlot({
      width: Math.max(240, box.clientWidth || 280), height: 150,
      series: [{}, ...labels.map((label, i) => ({
        label, stroke: COLORS[i], width: 2, value: (u, v) => (v == null ? "–" : fmt(v)),
      }))],
      axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmt(v)) }],
      legend: { show: false },
      // the last 3 minutes, even while there are few readings (uPlot would span years)
      scales: { x: { time: true, range: (u, min, max) => [max - (POINTS * STATS_EVERY) / 1000, max] } },
    }, data, box);
    return {
      push(t, values) {
        data[0].push(t);
        values.forEach((v, i) => data[i + 1].push(v));
        if (data[0].length > POINTS) data.forEach((a) => a.shift());
        plot.setData(data);
        summary.textContent = labels.map((l, i) => `${l}: ${values[i] == null ? "–" : fmt(values[i])}`).join(", ");
      },
      resize() { plot.setSize({ width: Math.max(240, box.clientWidth), height: 150 }); },
      destroy() { plot.destroy(); },
    };
  }

  vmChanged(vm) {
    const running = !!vm && LIVE.includes(vm.state);
    if (running && !this.timer) {
      this.timer = setInterval(() => this.read(), STATS_EVERY);
      this.read();
    } else if (!running && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      this.previous = null;
    }
  }

  async read() {
    if (this.busy) return;
    this.busy = true;
    try {
      const s = await this.api.get(`/vms/${this.name}/stats`);
      const t = Date.now() / 1000;
      const dt = this.previous ? t - this.previous.t : 0;
      CHARTS.forEach(([, , pick], i) => this.charts[i].push(t, pick(s, this.previous?.s, dt)));
      this.previous = { s, t };
    } catch (e) { /* stopped or deleted: the VM's state change stops the readings */ }
    this.busy = false;
  }

  close() {
    clearInterval(this.timer);
    this.resizer.disconnect();
    this.charts.forEach((c) => c.destroy());
  }
}

// --- snapshots ------------------------------------------------------------------------------

class Snapshots {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.tree = h("div");
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
        await this.api.post(`/vms/${this.name}/snapshots`, { name: snapName.value.trim() || null, memory: memory.checked });
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
      snaps = await this.api.get(`/vms/${this.name}/snapshots`);
    } catch (e) {
      return; // the VM is gone: the page says so
    }
    if (!snaps.length) {
      this.tree.replaceChildren(h("p", { class: "muted" }, "No snapshots yet."));
      return;
    }
    const children = new Map();
    const ids = new Set(snaps.map((s) => s.id));
    for (const s of snaps) {
      const parent = ids.has(s.parent) ? s.parent : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    }
    const branch = (parent) => h("ul", { class: "tree" }, ...(children.get(parent) || []).map((s) =>
      h("li", {}, this.item(s), children.has(s.id) ? branch(s.id) : null)));
    this.tree.replaceChildren(branch(null));
  }

  item(s) {
    const restore = h("button", { type: "button", class: "quiet", "aria-label": `Restore ${s.name}` }, "Restore");
    restore.addEventListener("click", async () => {
      if (!(await confirmAction(`Restore ${s.name}?`, `${this.name} goes back to this snapshot; what changed since is lost unless snapshotted.`, "Restore"))) return;
      try { await this.api.post(`/vms/${this.name}/snapshots/${s.name}/restore`); } catch (e) { toast(`Restore: ${e.message}`); }
    });
    const fork = h("button", { type: "button", class: "quiet", "aria-label": `Fork ${s.name}`, disabled: !s.memory }, "Fork");
    fork.addEventListener("click", async () => {
      const name = await promptText(`Fork ${this.name}@${s.name}`, "Name of the new VM", `${this.name}-fork`);
      if (!name) return;
      try {
        await this.api.post("/forks", { source: `${this.name}@${s.name}`, name });
        location.hash = `#/vm/${encodeURIComponent(name)}`;
      } catch (e) { toast(`Fork: ${e.message}`); }
    });
    const when = new Date(s.created * 1000).toLocaleString();
    return h("div", { class: "snap" },
      h("span", { class: "name" }, s.name),
      h("span", { class: "muted" }, `${when}${s.memory ? ", with memory" : ", disk only"}${s.current ? " (current)" : ""}`),
      restore, fork);
  }
}
