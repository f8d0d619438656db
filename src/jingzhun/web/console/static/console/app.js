// The console's router: `#section/arg/…` in the address picks a page; the language switch
// (the shell's link, kept in the jz_lang cookie) redraws the page in the other language.
import { clear, disposeCharts, errorBox, h, loading, state, t } from "./core.js";
import overview from "./pages/overview.js";
import persons from "./pages/persons.js";
import tags from "./pages/tags.js";
import audiences from "./pages/audiences.js";
import analytics from "./pages/analytics.js";
import campaigns from "./pages/campaigns.js";
import leads from "./pages/leads.js";
import measurement from "./pages/measurement.js";
import data from "./pages/data.js";

const PAGES = { overview, persons, tags, audiences, analytics, campaigns, leads, measurement, data };
const content = document.getElementById("content");
let drawn = 0; // the latest navigation: an older page that finishes late must not draw over it

function route() {
  const [name, ...args] = window.location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  return PAGES[name] ? { name, args } : { name: "overview", args: [] };
}

async function show() {
  const { name, args } = route();
  const mine = ++drawn;
  disposeCharts();
  document.querySelectorAll("#nav a").forEach((link) => link.classList.toggle("active", link.dataset.section === name));
  document.title = `${t(`nav.${name}`)} · 精准 jingzhun`;
  const page = h("div", { class: "page", dataset: { page: name } });
  clear(content, page);
  content.dataset.empty = "false";
  clear(page, loading());
  try {
    await PAGES[name](page, args, () => mine === drawn);
  } catch (error) {
    if (mine === drawn) {
      clear(page, errorBox(error));
    }
  }
}

window.addEventListener("hashchange", show);
document.getElementById("lang-switch").addEventListener("click", () => {
  // The shell's own handler (registered first) has set the cookie and relabelled the frame.
  state.lang = document.body.dataset.lang === "en" ? "en" : "zh";
  show();
});
show();
