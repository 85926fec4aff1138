// A VM's activity charts (uPlot): the counters 'vmkit stats' shows, read every 2 s while it
// runs. Each chart has a legend, a unit on its axis, and a caption with the latest values;
// memory draws the guest's RAM as a dashed, labelled line beside what QEMU holds resident.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { h, formatBytes } from "./dom.js";

const STATS_EVERY = 2000; // ms between two readings
const POINTS = 90; // readings kept on a chart (3 minutes)
const LIVE = ["running", "paused"];
const COLORS = ["#1f5fbf", "#b42318"];
const perSecond = (v) => `${formatBytes(v)}/s`;

// title, unit (the y axis), series [label, dashed?], values from two readings, format
const CHARTS = [
  { title: "CPU", unit: "% of one CPU", series: [["CPU used"]], format: (v) => `${v.toFixed(1)}%`,
    pick: (s) => [s.cpu_percent] },
  { title: "Memory", unit: "bytes", format: formatBytes,
    series: [["QEMU resident (guest RAM in use + QEMU)"], ["guest RAM given (limit)", true]],
    pick: (s) => [s.memory_rss_bytes, s.memory_limit_bytes],
    note: "QEMU's own code and caches come on top of the guest's RAM, so resident may exceed it." },
  { title: "Disk", unit: "bytes/s", series: [["read"], ["written"]], format: perSecond,
    pick: (s, p, dt) => [rate(s, p, "disk_read_bytes", dt), rate(s, p, "disk_write_bytes", dt)] },
  { title: "Network", unit: "bytes/s", series: [["received"], ["sent"]], format: perSecond,
    pick: (s, p, dt) => [rate(s, p, "net_rx_bytes", dt), rate(s, p, "net_tx_bytes", dt)],
    note: "As the guest counts it (its agent)." },
];

function rate(now, before, key, dt) {
  if (!before || now[key] == null || before[key] == null || dt <= 0) return null;
  return Math.max(0, (now[key] - before[key]) / dt);
}

export class Charts {
  constructor(card, api, name) {
    Object.assign(this, { api, name });
    this.grid = h("div", { class: "charts" });
    card.append(h("p", { class: "muted" }, "The counters of 'vmkit stats', read every 2 s while the VM runs; the last 3 minutes."),
      this.grid);
    this.charts = CHARTS.map((spec) => this.makeChart(spec));
    this.previous = null;
    this.resizer = new ResizeObserver(() => this.charts.forEach((c) => c.resize()));
    this.resizer.observe(this.grid);
  }

  makeChart({ title, unit, series, format, note }) {
    const box = h("div");
    const summary = h("span", {}, "–");
    const figure = h("figure", { class: "chart", "data-chart": title, "data-readings": 0 },
      h("h3", {}, `${title} `, h("span", { class: "muted unit" }, `(${unit})`)), box,
      h("figcaption", { class: "muted" }, summary, note ? h("br") : null, note || null));
    this.grid.append(figure);
    const data = [[], ...series.map(() => [])];
    const plot = new uPlot({
      width: Math.max(240, box.clientWidth || 280), height: 170,
      series: [{ label: "time" }, ...series.map(([label, dashed], i) => ({
        label, stroke: COLORS[i], width: dashed ? 1.5 : 2, dash: dashed ? [6, 4] : undefined,
        value: (u, v) => (v == null ? "–" : format(v)),
      }))],
      axes: [{}, { size: 70, label: unit, labelSize: 18, values: (u, vals) => vals.map((v) => format(v)) }],
      legend: { show: true, live: false },
      // the last 3 minutes, even while there are few readings (uPlot would span years)
      scales: {
        x: { time: true, range: (u, min, max) => [max - (POINTS * STATS_EVERY) / 1000, max] },
        y: { range: (u, min, max) => [0, Math.max(max * 1.15, 1)] }, // from zero: sizes compare
      },
    }, data, box);
    return {
      push(t, values) {
        data[0].push(t);
        values.forEach((v, i) => data[i + 1].push(v));
        if (data[0].length > POINTS) data.forEach((a) => a.shift());
        plot.setData(data);
        figure.dataset.readings = data[0].length;
        summary.textContent = series.map(([label], i) => `${label}: ${values[i] == null ? "–" : format(values[i])}`).join("; ");
      },
      resize() { plot.setSize({ width: Math.max(240, box.clientWidth), height: 170 }); },
      destroy() { plot.destroy(); },
    };
  }

  vmChanged(vm) {
    if (this.closed) return; // a VM read in flight when its page was left: no new readings
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
      const s = await this.api.get(`/vms/${encodeURIComponent(this.name)}/stats`);
      const t = Date.now() / 1000;
      const dt = this.previous ? t - this.previous.t : 0;
      CHARTS.forEach((spec, i) => this.charts[i].push(t, spec.pick(s, this.previous?.s, dt)));
      this.previous = { s, t };
    } catch (e) { /* stopped or deleted: the VM's state change stops the readings */ }
    this.busy = false;
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.resizer.disconnect();
    this.charts.forEach((c) => c.destroy());
  }
}
