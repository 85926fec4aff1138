// Remote hosts: the other vmkitd this one knows ('vmkit host add'), where VMs migrate to.
// Adding one here is 'vmkit host add' on this host: vmkitd checks that it answers and takes
// the token before keeping it.
import { h, field } from "./dom.js";
import { resourcePage } from "./resource.js";

export function show(main, ctx) {
  const [name, nameInput] = field("host-name", "Name", "Letters, digits and '-'.", { autocomplete: "off" });
  const [url, urlInput] = field("host-url", "URL", "Its API, as its 'vmkitd --listen ADDR:PORT' serves.",
    { placeholder: "https://10.0.0.5:8765", autocomplete: "off" });
  const [token, tokenInput] = field("host-token", "Token", "On that host: vmkit host token.",
    { type: "password", autocomplete: "off" });
  const [ca, caInput] = field("host-ca", "CA (optional)",
    "The PEM file of the CA that signed its TLS certificate, if not a public one.", { type: "file", accept: ".pem,.crt" });
  resourcePage(main, ctx, {
    title: "Remote hosts", path: "/hosts", noun: "host",
    intro: "Other vmkit hosts this one knows. A VM's page offers to migrate it to one, running. " +
      "Their tokens stay on this host.",
    columns: ["Name", "URL"],
    cells: (x) => [x.name, h("a", { href: x.url.replace(/\/?$/, "/ui/"), rel: "noopener", target: "_blank" }, x.url)],
    empty: "No remote hosts yet.",
    deleteText: () => "Only this host forgets it; nothing changes on it. VMs cannot migrate there any more.",
    form: {
      id: "host-add", title: "Add a host", label: "Add host", path: "/hosts", done: "Added",
      boxes: [h("div", { class: "row" }, name, url), h("div", { class: "row" }, token, ca)],
      body: async () => ({
        name: nameInput.value.trim(), url: urlInput.value.trim(), token: tokenInput.value.trim(),
        ca: caInput.files.length ? await caInput.files[0].text() : null,
      }),
    },
  });
}
