// The VM page: facts and actions, the serial console (xterm.js), the VNC display (noVNC),
// live charts of the counters 'vmkit stats' shows, snapshots, and migration.
import { Terminal } from "./vendor/xterm/xterm.mjs";
import { FitAddon } from "./vendor/xterm/addon-fit.mjs";
import { h, confirmAction, formatUptime } from "./dom.js";
import { Charts } from "./charts.js";
import { Snapshots } from "./snapshots.js";

const LIVE = ["running", "paused"];

export function show(main, ctx, name) {
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
