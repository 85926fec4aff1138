// The dashboard's pages, in the order of the nav bar: one module each, loaded when first
// opened. A module exports show(main, ctx) and may return a function that leaves the page.
// A new page is one line here and its module (e.g. { path: "/backups", label: "Backups",
// load: () => import("./backups.js") }).
export const PAGES = [
  { path: "/", label: "Virtual machines", load: () => import("./list.js") },
  { path: "/new", label: "Create VM", load: () => import("./create.js") },
  { path: "/images", label: "Images", load: () => import("./images.js") },
  { path: "/templates", label: "Templates", load: () => import("./templates.js") },
  { path: "/networks", label: "Networks", load: () => import("./networks.js") },
  { path: "/backups", label: "Backups", load: () => import("./backups.js") },
  { path: "/host", label: "Host", load: () => import("./summary.js") },
  { path: "/hosts", label: "Remote hosts", load: () => import("./hosts.js") },
  { path: "/cluster", label: "Cluster", load: () => import("./cluster.js") },
  { path: "/events", label: "Events", load: () => import("./events.js") },
];

// Pages reached from others, not listed in the nav: a path prefix and the rest as argument.
export const SUBPAGES = [
  { prefix: "/vm/", load: () => import("./vm.js") },
];
