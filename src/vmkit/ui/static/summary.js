// The host summary: CPU, memory and disk in use (bars), what the VMs here were given, and
// the facts of vmkitd (QEMU, accelerator, limits), as Proxmox's node summary shows them.
import { h, usageBar, formatBytes } from "./dom.js";

const EVERY = 3000; // ms between two readings

export function show(main, ctx) {
  const bars = h("div", { class: "usages" });
  const facts = h("dl", { class: "facts" });
  main.replaceChildren(h("h1", {}, "Host"),
    h("section", { class: "card", "aria-labelledby": "usage-h" }, h("h2", { id: "usage-h" }, "Usage"), bars),
    h("section", { class: "card", "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "vmkitd"), facts));
  const read = async () => {
    try {
      const [u, info] = await Promise.all([ctx.api.get("/info/usage"), ctx.api.get("/info")]);
      bars.replaceChildren(
        usageBar("cpu-usage", "CPU", u.cpu_percent, 100, `${u.cpu_percent.toFixed(0)}% of ${u.cpus} CPUs`),
        usageBar("memory-usage", "Memory", u.memory_used_bytes, u.memory_total_bytes),
        usageBar("disk-usage", `Disk (${u.disk_path})`, u.disk_used_bytes, u.disk_total_bytes));
      const rows = [
        ["Load average", u.load.map((l) => l.toFixed(2)).join(", ")],
        ["VMs", `${u.vms_running} running of ${u.vms}`],
        ["Given to running VMs", `${u.vm_cpus} vCPUs, ${formatBytes(u.vm_memory_bytes)} memory`],
        ["QEMU", info.qemu ? `${info.qemu_version} (${info.qemu})` : "not found"],
        ["Accelerator", info.accel ? `${info.accel}${info.accel_reason ? `: ${info.accel_reason}` : ""}` : "–"],
        ["Limits", info.limits || "–"], ["Images", info.images], ["Home", info.home],
      ];
      facts.replaceChildren(...rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v)))));
    } catch (e) {
      bars.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  read();
  const timer = setInterval(read, EVERY);
  return () => clearInterval(timer);
}
