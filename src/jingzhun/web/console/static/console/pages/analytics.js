// Analytics: every `jingzhun report` analysis as a form over the REST API; each answer shows
// its readings, a chart where a picture beats a table, the rows and the SQL behind them.
// The cube drills down: click a bar, a point or a row to filter on it and split one level finer.
import {
  analysisView, api, can, card, clear, field, get, h, into, option, pick, select, t,
} from "../core.js";

// One level finer for drill-down: time, geography, products, channels.
const FINER = { year: "quarter", quarter: "month", month: "day", week: "day", province: "city", city: "store",
  category: "subcategory", subcategory: "product", channel: "platform", age_band: "gender" };
const WEEKDAY_CHOICES = ["gender", "age_band", "member_level", "province", "city", "rfm_class"];

/** Each analysis: its fields (name, kind, default, options) and how to call it. */
const ANALYSES = {
  cube: { fields: [["measure", "measures", ["gmv"]], ["by", "dimension", "month"], ["by2", "dimension", ""],
    ["where", "text", ""], ["period", "text", ""]] },
  compare: { fields: [["measure", "measures", ["gmv"]], ["by", "dimension", "category"], ["period", "text", "2026-03"],
    ["against", "choice", "yoy", ["yoy", "mom", "wow"]], ["where", "text", ""]] },
  "root-cause": { fields: [["measure", "measure", "gmv"], ["period", "text", "2026-03"], ["base", "text", "2026-02"],
    ["where", "text", ""]] },
  funnel: { post: true, fields: [["steps", "text", "Product Viewed, Product Added, Checkout Started, Order Completed"],
    ["window", "text", "7d"], ["order", "choice", "strict", ["strict", "any"]], ["by", "text", ""]],
  body: (v) => ({ steps: v.steps.split(/[,，]/).map((s) => s.trim()).filter(Boolean), window: v.window, order: v.order,
    by: v.by || null }) },
  retention: { fields: [["cohort", "choice", "first_purchase", ["first_purchase", "first_visit", "registration"]],
    ["period", "choice", "month", ["day", "week", "month"]], ["activity", "choice", "purchase", ["any", "purchase", "visit"]]] },
  paths: { fields: [["event", "text", "Product Viewed"], ["direction", "choice", "next", ["next", "previous"]],
    ["depth", "number", 3]] },
  rules: { fields: [["level", "choice", "subcategory", ["product", "subcategory", "category"]], ["min_lift", "number", 1.2]] },
  "cross-sell": { fields: [["item", "text", ""], ["level", "choice", "subcategory", ["product", "subcategory", "category"]],
    ["top", "number", 5]] },
  lineup: { fields: [["level", "choice", "product", ["product", "subcategory", "category"]], ["slots", "number", 12]] },
  bundles: { fields: [["level", "choice", "product", ["product", "subcategory", "category"]], ["min_lift", "number", 1.5]] },
  "fans-vs-buyers": { fields: [["account", "text", "玉肌水光润泽, 玉肌水光润泽官方号"], ["product_line", "text", "水光润泽系列"],
    ["by", "text", "age_band, gender"]],
  query: (v) => ({ account: v.account.split(/[,，]/).map((s) => s.trim()).filter(Boolean), product_line: v.product_line,
    by: v.by.split(/[,，]/).map((s) => s.trim()).filter(Boolean) }) },
  "compare-audiences": { post: true, permission: "analyze", fields: [["a", "audience", ""], ["b", "audience", ""],
    ["by", "text", "age_band, gender, member_level"]],
  body: (v) => ({ a: { segment: v.a }, b: { segment: v.b }, by: v.by.split(/[,，]/).map((s) => s.trim()).filter(Boolean) }) },
  seasonality: { fields: [["by", "choice", "gender", WEEKDAY_CHOICES]] },
  "source-value": { fields: [["window", "number", 30]] },
};

let catalogCache = null;

async function context() {
  if (!catalogCache) {
    const [cube, audiences] = await Promise.all([get("/analytics/cube/catalog"), get("/audiences", { limit: 1000 })]);
    catalogCache = { cube, audiences: audiences.items };
  }
  return catalogCache;
}

function control(spec, ctx, value) {
  const [name, kind, fallback, choices] = spec;
  const current = value ?? fallback;
  const measureLabel = (m) => `${pick(m, "label")} · ${m.name}`;
  switch (kind) {
    case "measures":
      return h("select", { name, multiple: true, size: 4 }, ctx.cube.measures.map((m) => h("option", { value: m.name,
        selected: current.includes(m.name) ? true : undefined }, measureLabel(m))));
    case "measure":
      return select(ctx.cube.measures.map((m) => ({ value: m.name, label: measureLabel(m), selected: m.name === current })),
        { name });
    case "dimension":
      return select([option("", "—"), ...ctx.cube.dimensions.filter((d) => !d.param).map((d) => ({ value: d.name,
        label: `${pick(d, "label")} · ${d.name}`, selected: d.name === current }))], { name });
    case "choice":
      return select(choices.map((c) => ({ value: c, label: c, selected: c === current })), { name });
    case "audience":
      return select(ctx.audiences.map((a, i) => ({ value: a.segment_id, label: pick(a),
        selected: current ? a.segment_id === current : i === (name === "b" ? 1 : 0) })), { name });
    case "number":
      return h("input", { type: "number", name, value: current, step: "any", class: "short" });
    default:
      return h("input", { type: "text", name, value: current });
  }
}

function read(form) {
  const values = {};
  for (const element of form.elements) {
    if (!element.name) {
      continue;
    }
    values[element.name] = element.multiple ? [...element.selectedOptions].map((o) => o.value) : element.value;
  }
  return values;
}

function queryOf(name, values) {
  const spec = ANALYSES[name];
  if (spec.query) {
    return spec.query(values);
  }
  const query = { ...values };
  if (name === "cube" || name === "compare" || name === "root-cause") {
    query.by = [values.by, values.by2].filter(Boolean);
    delete query.by2;
    query.where = values.where ? values.where.split(/;\s*/).filter(Boolean) : undefined;
  }
  return query;
}

/** Drill into a clicked cell of the cube: filter on its value and split one level finer. */
function drill(form, values, clicked) {
  const dimension = values.by;
  if (!dimension || clicked === undefined || clicked === null) {
    return false;
  }
  const period = timePeriod(dimension, String(clicked));
  if (period) {  // a time bucket narrows the period instead of filtering
    form.elements.period.value = period;
  } else {
    const wheres = values.where ? values.where.split(/;\s*/).filter(Boolean) : [];
    wheres.push(`${dimension}=${clicked}`);
    form.elements.where.value = wheres.join("; ");
  }
  form.elements.by.value = FINER[dimension] || "";
  return true;
}

/** The period of one time bucket (its first day, as the cube labels it): 2026-03-01 → 2026-03. */
function timePeriod(dimension, first) {
  const [year, month] = first.split("-");
  switch (dimension) {
    case "year": return year;
    case "quarter": return `${year}-Q${Math.floor((Number(month) - 1) / 3) + 1}`;
    case "month": return `${year}-${month}`;
    case "week": {
      const end = new Date(`${first}T00:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 6);
      return `${first}..${end.toISOString().slice(0, 10)}`;
    }
    case "day": return first;
    default: return null;
  }
}

function runner(name, ctx, result) {
  const spec = ANALYSES[name];
  const form = h("form", { class: "analysis-form", id: `analysis-form-${name}` },
    spec.fields.map((f) => field(t(`analytics.field.${f[0]}`), control(f, ctx))),
    h("button", { type: "submit", class: "primary", id: "analysis-run" }, t("analytics.run")));
  const run = () => into(result, async () => {
    const values = read(form);
    const payload = queryOf(name, values);
    const answer = spec.post
      ? await api("POST", `/analytics/${name}`, { body: spec.body(values), query: { limit: 200 } })
      : await get(`/analytics/${name}`, { ...payload, limit: 200 });
    const drillTo = (clicked) => {
      if (drill(form, values, clicked)) {
        run();
      }
    };
    const cube = name === "cube" && values.by;
    return [cube ? h("p", { class: "muted" }, t("analytics.drill_hint")) : null,
      analysisView(answer, { onClick: cube ? (event) => drillTo(event.name) : undefined,
        onRow: cube ? (row) => drillTo(row[values.by]) : undefined })];
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  return { form, run };
}

export default async function analytics(page, args, current) {
  const ctx = await context();
  if (!current()) {
    return;
  }
  const name = ANALYSES[args[0]] ? args[0] : "cube";
  const result = h("div", { id: "analysis-result" });
  const tabs = h("nav", { class: "tabs", id: "analysis-tabs" }, Object.keys(ANALYSES).map((key) => h("a", {
    href: `#analytics/${key}`, class: key === name ? "active" : null }, t(`analytics.name.${key}`))));
  const spec = ANALYSES[name];
  if (spec.permission && !can(spec.permission)) {
    clear(page, h("h1", {}, t("nav.analytics")), tabs, card(t(`analytics.name.${name}`),
      h("p", { class: "muted denied" }, t(`role.needs.${spec.permission}`))));
    return;
  }
  const { form, run } = runner(name, ctx, result);
  clear(page, h("h1", {}, t("nav.analytics")), tabs,
    card(t(`analytics.name.${name}`), h("p", { class: "muted" }, t(`analytics.about.${name}`)), form), result);
  run();
}
