// The cluster this vmkitd is a member of ('vmkitd --cluster'): its hosts with their state,
// CPU and memory in use, cordon and uncordon; every VM with the host it lives on. A vmkitd
// in no cluster says so, with the command that starts a demo cluster.
import { h, table, row, toast, usageBar, formatBytes } from "./dom.js";

const EVERY = 3000; // ms between two readings
const DEMO = "sudo vmkit cluster up --hosts 3";

export function show(main, ctx) {
  const { api } = ctx;
  const hosts = h("div", { "aria-live": "polite" });
  const vms = h("div");
  main.replaceChildren(h("h1", {}, "Cluster"),
    h("section", { class: "card", "aria-labelledby": "cluster-hosts-h" }, h("h2", { id: "cluster-hosts-h" }, "Hosts"), hosts),
    h("section", { class: "card", "aria-labelledby": "cluster-vms-h" }, h("h2", { id: "cluster-vms-h" }, "VMs"), vms));
  const mark = async (host, state) => {
    try {
      await api.put(`/cluster/hosts/${encodeURIComponent(host.name)}/state`, { state });
    } catch (e) {
      toast(`${host.name}: ${e.message}`);
    }
    read();
  };
  const read = async () => {
    let found;
    try {
      // one after the other: in no cluster, the first refusal is the only one
      found = [await api.get("/cluster/hosts"), await api.get("/cluster/vms")];
    } catch (e) {
      if (e.kind === "invalid_state") { // in no cluster: nothing to read again
        clearInterval(timer);
        return notInCluster(main);
      }
      hosts.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
      return;
    }
    hosts.replaceChildren(hostTable(found[0], mark));
    vms.replaceChildren(vmTable(found[1]));
  };
  read();
  const timer = setInterval(read, EVERY);
  return () => clearInterval(timer);
}

function notInCluster(main) {
  main.replaceChildren(h("h1", {}, "Cluster"), h("section", { class: "card", id: "no-cluster" },
    h("p", {}, "This host is not in a cluster."),
    h("p", {}, "Start a demo cluster of three hosts on this machine (network namespaces, one etcd each) with ",
      h("code", {}, DEMO), ", then open the dashboard of one of them; a real host joins one with ",
      h("code", {}, "vmkitd --cluster URL --listen ADDR:PORT"), ".")));
}

function hostTable(list, mark) {
  return table("cluster-hosts", ["Host", "State", "CPU", "Memory", "Disk free", "QEMU", ""], list.map((x) => {
    const known = x.cpus != null;
    const cordoned = x.state === "cordoned" || x.state === "draining";
    const button = h("button", { type: "button", "aria-label": `${cordoned ? "Uncordon" : "Cordon"} ${x.name}`,
      disabled: x.state === "down" }, cordoned ? "Uncordon" : "Cordon");
    button.addEventListener("click", () => mark(x, cordoned ? "ready" : "cordoned"));
    return row(x.name, [
      ["Host", h("a", { href: x.url.replace(/\/?$/, "/ui/"), rel: "noopener", target: "_blank" }, x.name)],
      ["State", h("span", { class: `state state-${x.state}`, "data-state": x.state }, x.state)],
      ["CPU", known ? usageBar(`cpu-${x.name}`, "vCPUs", x.cpus_used, x.cpus, `${x.cpus_used} of ${x.cpus} CPUs`) : "–"],
      ["Memory", known ? usageBar(`memory-${x.name}`, "Memory", x.memory_used_mib * 2 ** 20, x.memory_mib * 2 ** 20) : "–"],
      ["Disk free", x.disk_free_bytes == null ? "–" : formatBytes(x.disk_free_bytes)],
      ["QEMU", x.qemu_version || "–"],
      ["", button],
    ]);
  }));
}

function vmTable(list) {
  if (!list.length) return h("p", { class: "muted" }, "No VMs in the cluster yet.");
  return table("cluster-vms", ["Name", "State", "Host", "CPUs", "Memory", "Image"], list.map((vm) => row(vm.name, [
    ["Name", vm.name], ["State", h("span", { class: `state state-${vm.state}` }, vm.state)],
    ["Host", vm.host], ["CPUs", String(vm.cpus)], ["Memory", vm.memory], ["Image", vm.image || "–"],
  ])));
}
