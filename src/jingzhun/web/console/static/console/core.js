// The console's building blocks: messages, the REST API, DOM helpers, tables, charts, SQL.
// Every page is a function (container, args) → Promise that fills `container` from the API.
// Data only ever enters the page as text (textContent), never as HTML.

const shellMessages = JSON.parse(document.getElementById("i18n").textContent);
const csrfToken = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

export const state = {
  lang: document.body.dataset.lang === "en" ? "en" : "zh",
  role: document.body.dataset.role || "viewer",
};

// ---- messages ----------------------------------------------------------------------------

export function t(key, vars) {
  const table = shellMessages[state.lang] || {};
  let text = table[key];
  if (text === undefined) {
    text = (shellMessages.zh || {})[key];
  }
  if (text === undefined) {
    return key;
  }
  if (vars) {
    text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? fmt(vars[name]) : whole));
  }
  return text;
}

/** The message for `key` when the catalogue has one, else `fallback` (a value from the data). */
export function tx(key, fallback) {
  const text = t(key);
  return text === key ? String(fallback ?? key) : text;
}

/** The label of a thing that carries both languages: {name_zh, name_en} or {zh, en}. */
export function pick(item, stem = "name") {
  if (!item) {
    return "";
  }
  const zh = item[`${stem}_zh`] ?? item.zh;
  const en = item[`${stem}_en`] ?? item.en;
  return (state.lang === "en" ? en || zh : zh || en) ?? "";
}

// ---- roles -------------------------------------------------------------------------------

const PERMISSIONS = {
  view: ["viewer", "analyst", "marketer", "admin"],
  analyze: ["analyst", "marketer", "admin"],
  market: ["marketer", "admin"],
  admin: ["admin"],
};

export function can(permission) {
  return (PERMISSIONS[permission] || []).includes(state.role);
}

// ---- the API -----------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && body.error) || {};
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.code = detail.code;
    this.field = detail.field;
    this.fix = detail.fix;
  }
}

function address(path, query) {
  const url = new URL(`/api/v1${path}`, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") {
      continue;
    }
    for (const one of Array.isArray(value) ? value : [value]) {
      url.searchParams.append(name, one);
    }
  }
  return url;
}

/** Call the REST API as the logged-in user: JSON in and out, the CSRF token on changes. */
export async function api(method, path, { query, body, form } = {}) {
  const headers = { "Accept-Language": state.lang, Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = csrfToken;
  }
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const answer = await fetch(address(path, query), { method, headers, body: payload, credentials: "same-origin" });
  if (answer.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent("/" + window.location.hash)}`);
  }
  if (answer.status === 204) {
    return null;
  }
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    throw new ApiError(answer.status, data);
  }
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body, query) => api("POST", path, { body, query });

/** A download link for a file answer (the session cookie authenticates a GET). */
export function downloadUrl(path, query) {
  return address(path, query).toString();
}

/** Poll a background job until it ends; `onProgress(job)` sees each state. */
export async function waitJob(job, onProgress, seconds = 600) {
  const deadline = Date.now() + seconds * 1000;
  let current = job;
  while (current.status === "running" || current.status === "queued") {
    if (onProgress) {
      onProgress(current);
    }
    if (Date.now() > deadline) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
    current = await get(`/jobs/${encodeURIComponent(current.job_id)}`);
  }
  if (onProgress) {
    onProgress(current);
  }
  return current;
}

// ---- DOM ---------------------------------------------------------------------------------

/** h("button", {class: "primary", onclick: fn}, "text", child…): an element; strings become text. */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "value") {
      node.value = value;
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, value);
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function option(value, label, selected) {
  return h("option", { value, selected: selected ? true : undefined }, label ?? value);
}

export function select(options, props = {}) {
  return h("select", props, options.map((o) => (o instanceof Node ? o : option(o.value, o.label, o.selected))));
}

export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", {}, hint) : null);
}

export function button(label, onclick, props = {}) {
  return h("button", { type: "button", ...props, onclick }, label);
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A role-aware action: hidden text for roles that may not, so the page says why. */
export function guarded(permission, node) {
  if (can(permission)) {
    return node;
  }
  return h("span", { class: "muted denied", dataset: { needs: permission } }, t(`role.needs.${permission}`));
}

// ---- numbers -----------------------------------------------------------------------------

export function fmt(value, digits) {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      return String(value);
    }
    const places = digits ?? (Number.isInteger(value) ? 0 : Math.abs(value) < 1 ? 4 : 2);
    return value.toLocaleString(state.lang === "en" ? "en-US" : "zh-CN", { maximumFractionDigits: places });
  }
  if (value === null || value === undefined) {
    return "—";
  }
  if (typeof value === "object") {
    return JSON.stringify(value);
  }
  return String(value);
}

export function pct(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(digits)}%` : "—";
}

// ---- results -----------------------------------------------------------------------------

export function loading() {
  return h("p", { class: "loading" }, t("common.loading"));
}

export function errorBox(error) {
  const fix = error && error.fix ? h("div", { class: "fix" }, `${t("common.fix")}: ${error.fix}`) : null;
  const where = error && error.field ? h("code", {}, error.field) : null;
  return h("div", { class: "error", role: "alert" }, where, " ", String((error && error.message) || error), fix);
}

/** Run `work` into `container`: a loading note first, the error in the page's language if it fails. */
export async function into(container, work) {
  clear(container, loading());
  try {
    const nodes = await work();
    clear(container, nodes);
  } catch (error) {
    clear(container, errorBox(error));
  }
}

/** The SQL behind a result, folded: every number can be rerun with `jingzhun sql`. */
export function sqlBlock(sql) {
  const entries = Object.entries(sql || {}).filter(([, text]) => text);
  if (!entries.length) {
    return null;
  }
  return h("details", { class: "sql" }, h("summary", {}, t("common.sql", { count: entries.length })),
    entries.map(([name, text]) => [h("div", { class: "sql-name" }, name), h("pre", {}, text)]));
}

export function readings(list) {
  if (!list || !list.length) {
    return null;
  }
  return h("ul", { class: "readings" }, list.map((reading) => h("li", {}, pick(reading))));
}

/** A table of rows; `cells` may render a column its own way, `onRow` makes rows clickable. */
export function table(columns, rows, { labels = {}, cells = {}, onRow, empty } = {}) {
  if (!rows || !rows.length) {
    return h("p", { class: "muted empty" }, empty || t("common.empty"));
  }
  const head = h("tr", {}, columns.map((c) => h("th", {}, labels[c] || c)));
  const body = rows.map((row) => h("tr", { class: onRow ? "clickable" : null, onclick: onRow ? () => onRow(row) : null },
    columns.map((c) => h("td", { class: typeof row[c] === "number" ? "num" : null },
      cells[c] ? cells[c](row[c], row) : fmt(row[c])))));
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

/** Paging under a list answer ({total, limit, offset}); `go(offset)` loads another page. */
export function pager(answer, go) {
  const { total, limit, offset } = answer;
  if (total <= limit && !offset) {
    return h("p", { class: "muted" }, t("common.total", { total }));
  }
  return h("div", { class: "pager" },
    button(t("common.previous"), () => go(Math.max(0, offset - limit)), { disabled: offset === 0 ? true : undefined }),
    h("span", {}, t("common.range", { from: offset + 1, to: Math.min(offset + limit, total), total })),
    button(t("common.next"), () => go(offset + limit), { disabled: offset + limit >= total ? true : undefined }));
}

export function kpi(label, value, note) {
  return h("div", { class: "kpi" }, h("div", { class: "kpi-label" }, label), h("div", { class: "kpi-value" }, value),
    note ? h("div", { class: "kpi-note" }, note) : null);
}

// ---- charts (Apache ECharts, vendored) ---------------------------------------------------

const charts = new Set();
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

export function disposeCharts() {
  charts.forEach((c) => c.dispose());
  charts.clear();
}

/** An ECharts chart in a new box; `option` is ECharts' own option object. */
export function chartBox(option, { tall = false, onClick } = {}) {
  const box = h("div", { class: tall ? "chart tall" : "chart" });
  requestAnimationFrame(() => {
    if (!box.isConnected || !window.echarts) {
      return;
    }
    const chart = window.echarts.init(box, null, { renderer: "canvas" });
    chart.setOption({ animation: false, tooltip: { trigger: "item" }, grid: { left: 60, right: 24, top: 40, bottom: 48 },
      ...option });
    if (onClick) {
      chart.on("click", onClick);
    }
    charts.add(chart);
  });
  return box;
}

function label(value) {
  return value === null || value === undefined ? "—" : String(value);
}

/** Draw an analysis from its chart spec ({kind, x, y, series, title_zh, title_en}) and its rows. */
export function analysisChart(spec, rows, { onClick, columnLabel = (c) => c } = {}) {
  if (!spec || !rows || !rows.length) {
    return null;
  }
  const title = { text: pick(spec, "title"), textStyle: { fontSize: 14 } };
  if (spec.kind === "funnel") {
    return chartBox({ title, tooltip: { trigger: "item" }, series: [{ type: "funnel", top: 40, sort: "none",
      data: rows.map((r) => ({ name: label(r[spec.x]), value: r[spec.y[0]] })) }] }, { onClick });
  }
  if (spec.kind === "heatmap") {
    return heatmap(spec, rows, title, onClick);
  }
  const xs = [...new Set(rows.map((r) => label(r[spec.x])))];
  let series;
  if (spec.series) {
    const groups = [...new Set(rows.map((r) => label(r[spec.series])))].slice(0, 12);
    series = groups.map((group) => ({ name: group, type: spec.kind === "line" ? "line" : "bar",
      data: xs.map((x) => {
        const found = rows.find((r) => label(r[spec.x]) === x && label(r[spec.series]) === group);
        return found ? found[spec.y[0]] : null;
      }) }));
  } else {
    series = spec.y.map((column) => ({ name: columnLabel(column), type: spec.kind === "line" ? "line" : "bar",
      data: rows.map((r) => r[column]) }));
  }
  return chartBox({ title, legend: { top: 0, right: 0, type: "scroll" }, tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: xs, axisLabel: { hideOverlap: true } }, yAxis: { type: "value" }, series },
  { onClick });
}

/** Long rows for a heatmap from a pivoted table (a retention triangle: one column per offset). */
function melted(spec, rows) {
  if (rows[0][spec.x] !== undefined) {
    return rows;
  }
  const offsets = Object.keys(rows[0]).filter((key) => /^\d+$/.test(key));
  return rows.flatMap((row) => offsets.map((offset) => ({ [spec.x]: offset, [spec.series]: row[spec.series],
    [spec.y[0]]: row[offset] }))).filter((row) => row[spec.y[0]] !== null && row[spec.y[0]] !== undefined);
}

function heatmap(spec, given, title, onClick) {
  const rows = melted(spec, given);
  const xs = [...new Set(rows.map((r) => label(r[spec.x])))];
  const ys = [...new Set(rows.map((r) => label(r[spec.series])))];
  const values = rows.map((r) => [xs.indexOf(label(r[spec.x])), ys.indexOf(label(r[spec.series])), r[spec.y[0]]]);
  const numbers = values.map((v) => v[2]).filter((v) => typeof v === "number");
  return chartBox({ title, tooltip: { position: "top" }, grid: { left: 90, right: 24, top: 40, bottom: 70 },
    xAxis: { type: "category", data: xs }, yAxis: { type: "category", data: ys },
    visualMap: { min: Math.min(...numbers, 0), max: Math.max(...numbers, 1), calculable: true, orient: "horizontal",
      left: "center", bottom: 0 },
    series: [{ type: "heatmap", data: values, label: { show: xs.length * ys.length <= 120 } }] },
  { tall: ys.length > 8, onClick });
}

/** Everything an analysis answer shows: readings, chart, rows, paging, SQL. */
export function analysisView(answer, { onClick, onRow, go } = {}) {
  return [
    readings(answer.readings),
    analysisChart(answer.chart, answer.items, { onClick }),
    table(answer.columns, answer.items, { onRow }),
    go ? pager(answer, go) : null,
    sqlBlock(answer.sql),
  ];
}
