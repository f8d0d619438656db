// Sales leads (销售线索): the scored list with filters and paging; one lead — its score and why
// (the freshness / intent / fit parts, intent tags, the lead file's inputs, the model), its
// assignments and outcomes, and the form a rep's outcome is recorded with; marketers run a
// scoring (a background job) and an assignment round, optionally as of a past day (a replay).
import {
  button, card, chartBox, clear, errorBox, field, fmt, get, guarded, h, into, kpi, pager, pct, post, select, sqlBlock,
  state, t, table, tx, waitJob,
} from "../core.js";

const STATUSES = ["open", "won", "lost", "all"];
const OUTCOMES = ["won", "lost", "no_answer"];
const PARTS = ["freshness_part", "intent_part", "fit_part"];
const COLUMNS = ["lead_id", "contact_name", "company", "city", "territory", "score", ...PARTS, "intent_tags",
  "days_since_activity", "rep_id", "status"];
const PAGE_SIZE = 20;
// The list's filters outlive a visit to one lead (the module stays loaded).
const filters = { status: "open", rep_id: "", assigned: "", offset: 0 };

/** An instant in the browser's time zone, to the minute (a replayed 09:00 in Shanghai reads 09:00). */
function when(value) {
  const moment = value ? new Date(value) : null;
  if (!moment || Number.isNaN(moment.getTime())) {
    return value ? String(value) : "—";
  }
  return new Date(moment.getTime() - moment.getTimezoneOffset() * 60000).toISOString().slice(0, 16).replace("T", " ");
}

function signed(value) {
  return typeof value === "number" ? `${value >= 0 ? "+" : ""}${fmt(value, 2)}` : "—";
}

function tagsOf(text) {
  try {
    return JSON.parse(text || "[]");
  } catch (error) {
    return [];
  }
}

function tagLabel(tag) {
  const [name, value] = tag.split(":");
  return value ? `${tx(`leads.tag.${name}`, name)}: ${tx(`leads.source.${value}`, value)}` : tx(`leads.tag.${name}`, name);
}

function tagChips(text) {
  return h("span", { class: "chips" }, tagsOf(text).map((tag) => h("span", { class: "chip" }, tagLabel(tag))));
}

/** A failed job's error in the page's language (jobs keep both). */
function failure(job) {
  const error = job.error || {};
  return errorBox({ message: error[`message_${state.lang}`] || job.status, fix: error[`fix_${state.lang}`],
    field: error.field });
}

/** The replay instant of the datetime-local input, as UTC ISO 8601 (empty: the server's default). */
function instant(input) {
  return input.value ? new Date(input.value).toISOString() : null;
}

// ---- the list -------------------------------------------------------------------------------

function leadTable(answer) {
  return table(COLUMNS, answer.items, {
    labels: Object.fromEntries(COLUMNS.map((c) => [c, t(`leads.col.${c}`)])),
    cells: { score: (v) => pct(v, 1), freshness_part: signed, intent_part: signed, fit_part: signed,
      intent_tags: tagChips, days_since_activity: (v) => fmt(v, 1), status: (s) => tx(`leads.status.${s}`, s),
      rep_id: (r) => r || "—" },
    onRow: (row) => { window.location.hash = `#leads/${encodeURIComponent(row.lead_id)}`; },
    empty: t("leads.none") });
}

function listBox() {
  const box = h("div", { id: "leads-list" });
  const load = (offset) => {
    filters.offset = offset;
    return into(box, async () => {
      const answer = await get("/leads", { status: filters.status, rep_id: filters.rep_id || undefined,
        assigned: filters.assigned || undefined, limit: PAGE_SIZE, offset });
      box.dataset.total = answer.total;
      return [leadTable(answer), pager(answer, load), sqlBlock(answer.sql)];
    });
  };
  return { box, load };
}

function filterBar(team, list) {
  const status = select(STATUSES.map((s) => ({ value: s, label: t(`leads.status.${s}`), selected: s === filters.status })),
    { id: "leads-status" });
  const rep = select([{ value: "", label: t("leads.all_reps") }, ...team.reps.map((r) => ({ value: r.id,
    label: `${r.name || r.id} · ${r.id}`, selected: r.id === filters.rep_id }))], { id: "leads-rep" });
  const assigned = select(["", "true", "false"].map((v) => ({ value: v, label: t(`leads.assigned.${v || "any"}`),
    selected: v === filters.assigned })), { id: "leads-assigned" });
  const changed = () => {
    Object.assign(filters, { status: status.value, rep_id: rep.value, assigned: assigned.value });
    list.load(0);
  };
  [status, rep, assigned].forEach((control) => control.addEventListener("change", changed));
  return h("div", { class: "form-row" }, field(t("leads.col.status"), status), field(t("leads.rep"), rep),
    field(t("leads.holding"), assigned));
}

function actions(list, reloadTeam) {
  const at = h("input", { type: "datetime-local", id: "leads-at" });
  const status = h("div", { class: "muted", id: "leads-run-status" });
  const score = async (event) => {
    const pressed = event.currentTarget;
    pressed.disabled = true;
    try {
      const job = await post("/leads/score", { as_of: instant(at) });
      const done = await waitJob(job, (j) => clear(status, t("common.job", { status: tx(`job.${j.status}`, j.status),
        progress: "…", step: j.step || "" })));
      if (done.status !== "succeeded") {
        clear(status, failure(done));
      } else {
        const r = done.result;
        clear(status, t("leads.scored", { open: r.statuses.open ?? 0, won: r.statuses.won ?? 0,
          lost: r.statuses.lost ?? 0, auc: r.test ? fmt(r.test.auc, 3) : "—",
          freshness_auc: r.test ? fmt(r.test.freshness_auc, 3) : "—" }));
        list.load(0);
      }
    } catch (error) {
      clear(status, errorBox(error));
    }
    pressed.disabled = false;
  };
  const assign = async (event) => {
    const pressed = event.currentTarget;
    pressed.disabled = true;
    try {
      const answer = await post("/leads/assign", { at: instant(at) });
      const perRep = Object.entries(answer.per_rep).map(([rep, n]) => `${rep} ${n}`).join(" · ");
      clear(status, t("leads.assigned_now", { count: answer.assigned, per_rep: perRep || "—" }));
      list.load(0);
      reloadTeam();
    } catch (error) {
      clear(status, errorBox(error));
    }
    pressed.disabled = false;
  };
  return card(t("leads.actions"), guarded("market", h("div", {},
    h("div", { class: "form-row" }, field(t("leads.at"), at, t("leads.at_hint")),
      button(t("leads.score"), score, { id: "leads-score" }),
      button(t("leads.assign"), assign, { class: "primary", id: "leads-assign" })), status)));
}

function teamView(team) {
  const work = Object.fromEntries((team.workload || []).map((row) => [row.rep_id, row]));
  const rows = team.reps.map((r) => ({ ...r, territories: r.territories.join(", "), ...(work[r.id] || {}),
    period: t(`leads.period.${r.period}`) }));
  const columns = ["id", "name", "territories", "quota", "period", "holding", "assigned", "won", "lost", "no_answer"];
  const territories = Object.entries(team.territories).map(([id, territory]) => h("li", {},
    h("strong", {}, territory.name ? (state.lang === "en" ? territory.name.en : territory.name.zh) : id), " ",
    h("code", {}, id), ": ", territory.cities.join("、")));
  return [table(columns, rows, { labels: Object.fromEntries(columns.map((c) => [c, t(`leads.team.${c}`)])),
    empty: t("leads.no_reps") }),
  h("ul", { class: "plain" }, territories, h("li", { class: "muted" }, t("leads.other_territory"))),
  sqlBlock(team.sql)];
}

async function listPage(page, current) {
  const team = await get("/leads/settings").catch((error) => ({ reps: [], territories: {}, error }));
  if (!current()) {
    return;
  }
  const list = listBox();
  const teamBox = h("div", { id: "leads-team" });
  const reloadTeam = () => into(teamBox, async () => teamView(await get("/leads/settings")));
  clear(page, h("h1", {}, t("nav.leads")), h("p", { class: "muted" }, t("leads.intro")),
    actions(list, reloadTeam),
    card(t("leads.list"), filterBar(team, list), list.box),
    card(t("leads.team"), teamBox));
  list.load(filters.offset);
  if (team.error) {
    clear(teamBox, errorBox(team.error));
  } else {
    clear(teamBox, teamView(team));
  }
}

// ---- one lead -------------------------------------------------------------------------------

function partsChart(lead) {
  if (typeof lead.score !== "number") {
    return h("p", { class: "muted" }, t("leads.no_model"));
  }
  const bars = PARTS.map((p) => ({ value: lead[p], itemStyle: { color: lead[p] >= 0 ? "#389e0d" : "#cf1322" } }));
  return chartBox({ grid: { left: 80, right: 60, top: 10, bottom: 30 }, tooltip: { trigger: "axis" },
    xAxis: { type: "value" }, yAxis: { type: "category", inverse: true, data: PARTS.map((p) => t(`leads.col.${p}`)) },
    series: [{ type: "bar", data: bars, barMaxWidth: 36,
      label: { show: true, position: "right", formatter: (v) => signed(v.value) } }] });
}

function why(answer) {
  const lead = answer.lead;
  const facts = [
    ["source", tx(`leads.source.${lead.source}`, lead.source)], ["pages_viewed", lead.pages_viewed ?? "—"],
    ["price_checks", lead.price_checks ?? "—"], ["sample_requested", lead.sample_requested === "Y" ? t("common.yes")
      : t("common.no")], ["days_since_activity", fmt(lead.days_since_activity, 1)],
    ["freshness", fmt(lead.freshness, 3)], ["last_activity_at", when(lead.last_activity_at)],
    ["company", lead.company || "—"], ["customer", lead.person_id ? h("a", { href: `#persons/${encodeURIComponent(lead.person_id)}` },
      lead.person_id) : t("leads.not_customer")],
  ];
  const model = answer.model;
  return [
    h("p", { class: "muted" }, t("leads.parts_note")),
    h("div", { class: "grid2" }, partsChart(lead), h("div", {},
      h("div", { id: "lead-tags" }, tagChips(lead.intent_tags)),
      h("dl", { class: "facts", id: "lead-inputs" }, facts.map(([key, value]) => [h("dt", {}, t(`leads.fact.${key}`)),
        h("dd", {}, value)])))),
    model ? h("details", { class: "sql" }, h("summary", {}, t("leads.model", { version: model.model_version,
      auc: model.test ? fmt(model.test.auc, 3) : "—", freshness_auc: model.test ? fmt(model.test.freshness_auc, 3) : "—" })),
    table(["feature", "coefficient"], Object.entries(model.coefficients).map(([feature, coefficient]) => ({ feature,
      coefficient })), { labels: { feature: t("leads.feature"), coefficient: t("leads.coefficient") },
      cells: { feature: (f) => tx(`leads.feature.${f}`, f), coefficient: signed } })) : null,
  ];
}

function outcomeForm(id, answer, team, redraw) {
  if (!answer.held_by) {
    return h("p", { class: "muted", id: "outcome-not-held" }, t("leads.not_held"));
  }
  const rep = select(team.reps.map((r) => ({ value: r.id, label: `${r.name || r.id} · ${r.id}`,
    selected: r.id === answer.held_by })), { id: "outcome-rep", name: "rep_id" });
  const outcome = select(OUTCOMES.map((o) => ({ value: o, label: t(`leads.outcome.${o}`) })),
    { id: "outcome-kind", name: "outcome" });
  const note = h("textarea", { id: "outcome-note", name: "note", rows: 2, cols: 40, maxlength: 2000 });
  const status = h("div", { id: "outcome-status" });
  const submit = async (event) => {
    event.preventDefault();
    const sending = event.currentTarget.querySelector("button[type=submit]");
    sending.disabled = true;
    try {
      await post(`/leads/${encodeURIComponent(id)}/outcome`, { outcome: outcome.value, rep_id: rep.value || null,
        note: note.value.trim() || null });
      await redraw(t("leads.recorded", { outcome: t(`leads.outcome.${outcome.value}`) }));
    } catch (error) {
      clear(status, errorBox(error));
      sending.disabled = false;
    }
  };
  return h("form", { id: "outcome-form", onsubmit: submit },
    h("div", { class: "form-row" }, field(t("leads.rep"), rep), field(t("leads.outcome"), outcome),
      field(t("leads.note"), note),
      h("button", { type: "submit", class: "primary", id: "outcome-submit" }, t("leads.record"))), status);
}

async function leadPage(page, current, id, notice) {
  const [answer, team] = await Promise.all([get(`/leads/${encodeURIComponent(id)}`),
    get("/leads/settings").catch(() => ({ reps: [], territories: {} }))]);
  if (!current()) {
    return;
  }
  const lead = answer.lead;
  const redraw = (said) => leadPage(page, current, id, said);
  clear(page, h("p", {}, h("a", { href: "#leads" }, t("leads.back"))),
    h("h1", { id: "lead-title" }, lead.contact_name || lead.lead_id, " ", h("code", {}, lead.lead_id), " ",
      h("span", { class: `badge status-${lead.status}`, id: "lead-status" }, tx(`leads.status.${lead.status}`, lead.status))),
    notice ? h("div", { class: "notice", id: "lead-notice" }, notice) : null,
    h("div", { class: "kpis", id: "lead-score" }, kpi(t("leads.col.score"), pct(lead.score, 1), t("leads.score_note")),
      PARTS.map((p) => kpi(t(`leads.col.${p}`), signed(lead[p]))),
      kpi(t("leads.held_by"), answer.held_by || "—", lead.territory ? `${t("leads.col.territory")}: ${lead.territory}` : null)),
    card(t("leads.contact"), h("dl", { class: "facts" },
      h("dt", {}, t("leads.col.contact_name")), h("dd", {}, lead.contact_name || "—"),
      h("dt", {}, t("leads.phone")), h("dd", { id: "lead-phone" }, lead.phone || "—"),
      h("dt", {}, t("leads.col.city")), h("dd", {}, lead.city || "—"),
      h("dt", {}, t("leads.created")), h("dd", {}, when(lead.created_at)),
      h("dt", {}, t("leads.crm_owner")), h("dd", {}, lead.crm_owner || "—"))),
    card(t("leads.why"), why(answer)),
    card(t("leads.record_title"), guarded("market", outcomeForm(id, answer, team, redraw))),
    card(t("leads.outcomes"), h("div", { id: "lead-outcomes" }, table(["recorded_at", "rep_id", "outcome", "note",
      "recorded_by"], answer.outcomes, { labels: { recorded_at: t("leads.when"), rep_id: t("leads.rep"),
      outcome: t("leads.outcome"), note: t("leads.note"), recorded_by: t("leads.by") },
    cells: { recorded_at: when, outcome: (o) => t(`leads.outcome.${o}`) }, empty: t("leads.no_outcomes") }))),
    card(t("leads.assignments"), h("div", { id: "lead-assignments" }, table(["attempt", "rep_id", "territory", "score",
      "assigned_at", "assigned_by", "closed_at", "close_reason"], answer.assignments, {
      labels: { attempt: t("leads.attempt"), rep_id: t("leads.rep"), territory: t("leads.col.territory"),
        score: t("leads.col.score"), assigned_at: t("leads.assigned_at"), assigned_by: t("leads.by"),
        closed_at: t("leads.closed_at"), close_reason: t("leads.outcome") },
      cells: { score: (v) => pct(v, 1), assigned_at: when, closed_at: when,
        close_reason: (o) => (o ? tx(`leads.outcome.${o}`, o) : t("leads.still_open")) },
      empty: t("leads.never_assigned") }))),
    sqlBlock(answer.sql));
}

export default async function leads(page, args, current) {
  if (args[0]) {
    return leadPage(page, current, args[0]);
  }
  return listPage(page, current);
}
