// What can be done to a VM, as buttons: one VM (its row, its page) or several (the list's
// bulk bar). Destructive actions are confirmed first.
import { h, confirmAction, toast } from "./dom.js";

export const ACTIONS = {
  start: { label: "Start", when: ["stopped", "crashed"] },
  stop: { label: "Stop", when: ["running", "paused"], confirm: "shuts the guest down" },
  pause: { label: "Pause", when: ["running"] },
  resume: { label: "Resume", when: ["paused"] },
  restart: { label: "Restart", when: ["running"], confirm: "shuts the guest down and boots it again" },
  delete: {
    label: "Delete", when: ["stopped", "crashed", "running", "paused"], danger: true,
    confirm: "removes the VM and its disk for good",
  },
};

function request(api, name, action) {
  return action === "delete" ? api.delete(`/vms/${encodeURIComponent(name)}?force=true`)
    : api.post(`/vms/${encodeURIComponent(name)}/${action}`);
}

export function actionButtons(api, vm, { onDone } = {}) {
  const buttons = [];
  for (const [action, info] of Object.entries(ACTIONS)) {
    if (!info.when.includes(vm.state)) continue;
    const button = h("button", {
      type: "button", class: info.danger ? "danger" : "quiet",
      "aria-label": `${info.label} ${vm.name}`, "data-action": action,
    }, info.label);
    button.addEventListener("click", () => runAction(api, vm, action, button, onDone));
    buttons.push(button);
  }
  return h("div", { class: "buttons" }, ...buttons);
}

async function runAction(api, vm, action, button, onDone) {
  const info = ACTIONS[action];
  if (info.confirm && !(await confirmAction(`${info.label} ${vm.name}?`,
                                            `This ${info.confirm}.`, info.label))) {
    button.focus();
    return;
  }
  button.disabled = true;
  try {
    await request(api, vm.name, action);
    onDone?.(action);
  } catch (e) {
    toast(`${info.label} ${vm.name}: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

// Do ``action`` to each of ``vms`` (those it applies to), after one confirmation; every
// failure is told, the others still happen. Resolves once all have answered.
export async function bulkAction(api, vms, action) {
  const info = ACTIONS[action];
  const targets = vms.filter((vm) => info.when.includes(vm.state));
  if (!targets.length) {
    toast(`${info.label}: no selected VM is in a state it applies to (${info.when.join(", ")}).`);
    return;
  }
  const names = targets.map((vm) => vm.name).join(", ");
  if (info.confirm && !(await confirmAction(`${info.label} ${targets.length} VMs?`,
                                            `This ${info.confirm}: ${names}.`, info.label))) return;
  const results = await Promise.allSettled(targets.map((vm) => request(api, vm.name, action)));
  const failed = results.map((r, i) => r.status === "rejected" ? `${targets[i].name}: ${r.reason.message}` : null)
    .filter(Boolean);
  if (failed.length) toast(`${info.label} failed for ${failed.join("; ")}`);
}
