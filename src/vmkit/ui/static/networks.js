// Private networks ('vmkit net'): a bridge with DHCP and DNS for the VMs on it.
import { h, field, formatTime } from "./dom.js";
import { resourcePage } from "./resource.js";

export function show(main, ctx) {
  const [name, nameInput] = field("net-name", "Name", "Letters, digits and '-'.", { autocomplete: "off" });
  const [subnet, subnetInput] = field("net-subnet", "Subnet", "Empty: a free /24 in 10.77.0.0/16.", { placeholder: "10.77.5.0/24" });
  const isolated = h("input", { id: "net-isolated", type: "checkbox" });
  resourcePage(main, ctx, {
    title: "Networks", path: "/networks", noun: "network",
    intro: "Private networks connect VMs to each other; pick them in the create form. nat and restricted need none.",
    columns: ["Name", "Subnet", "Gateway", "Isolated", "Driver", "VMs", "Created"],
    cells: (n) => [n.name, n.subnet, n.gateway, n.isolated ? "yes: no way out" : "no",
      n.driver === "bridge" ? `bridge ${n.bridge}` : n.driver,
      n.vms.length ? h("span", {}, ...n.vms.flatMap((vm, i) => [i ? ", " : "", h("a", { href: `#/vm/${encodeURIComponent(vm)}` }, vm)])) : "–",
      formatTime(n.created)],
    empty: "No private networks yet.",
    deleteText: (n) => (n.vms.length ? `VMs use it (${n.vms.join(", ")}): vmkitd will refuse until they are removed.`
      : "Its bridge goes; VMs created later cannot join it."),
    form: {
      id: "net-create", title: "Create a network", label: "Create network", path: "/networks",
      boxes: [h("div", { class: "row" }, name, subnet),
        h("label", { for: "net-isolated" }, isolated, " isolated: no route out of the host")],
      body: () => ({ name: nameInput.value.trim(), subnet: subnetInput.value.trim() || null, isolated: isolated.checked }),
    },
  });
}
