// Campaigns: the list; a new campaign from audience × template × channels × schedule; one
// campaign's copy preview per person, launch (a background job with progress), pause/resume,
// and results — the send funnel per arm, why people were left out, lift and ROI.
import {
  button, can, card, chartBox, clear, errorBox, field, fmt, get, guarded, h, into, kpi, pct, pick, post,
  select, sqlBlock, state, t, table, tx, waitJob,
} from "../core.js";

const CHANNELS = ["sms", "email", "wechat", "app_push", "ads"];
const FUNNEL = ["audience", "held_out", "suppressed", "deferred", "pending", "sent", "failed", "opened", "clicked"];

function localNow() {
  const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
  return now.toISOString().slice(0, 16);
}

// ---- the list -------------------------------------------------------------------------------

async function listPage(page, current) {
  const answer = await get("/campaigns", { limit: 1000 });
  if (!current()) {
    return;
  }
  clear(page, h("h1", {}, t("nav.campaigns")),
    h("div", { class: "toolbar" }, guarded("market", h("a", { class: "button primary", href: "#campaigns/new",
      id: "campaign-new" }, t("campaigns.new")))),
    card(t("campaigns.list"), table(["name", "segment_id", "channel", "kind", "holdout_ratio", "status", "created_at"],
      answer.items, {
        labels: { name: t("campaigns.name"), segment_id: t("campaigns.audience"), channel: t("campaigns.channels"),
          kind: t("campaigns.schedule"), holdout_ratio: t("campaigns.holdout"), status: t("campaigns.status"),
          created_at: t("campaigns.created") },
        cells: { status: (s) => tx(`campaigns.status.${s}`, s), holdout_ratio: (v) => pct(v, 0),
          kind: (k) => tx(`campaigns.kind.${k}`, k), created_at: (v) => String(v).slice(0, 16).replace("T", " ") },
        onRow: (row) => { window.location.hash = `#campaigns/${encodeURIComponent(row.campaign_id)}`; },
        empty: t("campaigns.none") })));
}

// ---- a new campaign -------------------------------------------------------------------------

function scheduleOf(kind, at, time) {
  if (kind === "once") {
    return { kind: "once", at: new Date(at).toISOString() };
  }
  return { kind: "recurring", every: kind, at: time };
}

async function newPage(page, current) {
  const [audiences, templates] = await Promise.all([get("/audiences", { limit: 1000 }), get("/templates")]);
  if (!current()) {
    return;
  }
  const wanted = new URLSearchParams(window.location.hash.split("?")[1] || "").get("audience");
  const id = h("input", { type: "text", id: "campaign-id", pattern: "[a-z0-9_]{2,63}", required: true });
  const zh = h("input", { type: "text", id: "campaign-name-zh" });
  const en = h("input", { type: "text", id: "campaign-name-en" });
  const audience = select(audiences.items.map((a) => ({ value: a.segment_id, selected: a.segment_id === wanted,
    label: `${pick(a)} (${fmt(a.members ?? 0)})` })), { id: "campaign-audience" });
  const template = select(templates.map((x) => ({ value: x.id, label: `${pick(x)} · ${x.id}` })), { id: "campaign-template" });
  const channelBox = h("div", { class: "checks", id: "campaign-channels" });
  const drawChannels = () => {
    const chosen = templates.find((x) => x.id === template.value) || { channels: [] };
    clear(channelBox, CHANNELS.filter((c) => c === "ads" || chosen.channels.includes(c)).map((c) => h("label",
      { class: "check" }, h("input", { type: "checkbox", value: c }), t(`channel.${c}`))));
  };
  template.addEventListener("change", drawChannels);
  drawChannels();
  const kind = select(["once", "daily", "weekly"].map((k) => ({ value: k, label: t(`campaigns.kind.${k}`) })),
    { id: "campaign-schedule" });
  const at = h("input", { type: "datetime-local", id: "campaign-at", value: localNow() });
  const time = h("input", { type: "time", id: "campaign-time", value: "10:00" });
  const holdout = h("input", { type: "number", id: "campaign-holdout", min: 0, max: 90, step: 5, value: 20 });
  const status = h("div", { id: "campaign-create-status" });
  const create = async () => {
    const channels = [...channelBox.querySelectorAll("input:checked")].map((c) => c.value);
    const definition = { campaign_id: id.value.trim(), name_zh: zh.value.trim() || id.value.trim(),
      name_en: en.value.trim() || id.value.trim(), audience: { segment_id: audience.value },
      template_id: template.value, channels, language: state.lang,
      schedule: scheduleOf(kind.value, at.value, time.value), holdout: Number(holdout.value) / 100 };
    try {
      await post("/campaigns", definition);
      window.location.hash = `#campaigns/${encodeURIComponent(definition.campaign_id)}`;
    } catch (error) {
      clear(status, errorBox(error));
    }
  };
  clear(page, h("h1", {}, t("campaigns.new")), card(null,
    h("div", { class: "form-grid" },
      field(t("campaigns.id"), id, t("builder.segment_id_hint")), field(t("builder.name_zh"), zh),
      field(t("builder.name_en"), en), field(t("campaigns.audience"), audience),
      field(t("campaigns.template"), template), field(t("campaigns.channels"), channelBox, t("campaigns.channels_hint")),
      field(t("campaigns.schedule"), kind), field(t("campaigns.at"), at), field(t("campaigns.daily_at"), time),
      field(t("campaigns.holdout_pct"), holdout, t("campaigns.holdout_hint"))),
    guarded("market", button(t("campaigns.create"), create, { class: "primary", id: "campaign-create" })), status));
}

// ---- one campaign ---------------------------------------------------------------------------

function previewBox(id, definition) {
  const person = h("input", { type: "text", id: "preview-person", placeholder: t("persons.placeholder") });
  const channel = select(definition.channels.filter((c) => c !== "ads").map((c) => ({ value: c, label: t(`channel.${c}`) })),
    { id: "preview-channel" });
  const lang = select([{ value: "zh", label: "中文" }, { value: "en", label: "English" }].map((o) => ({ ...o,
    selected: o.value === (definition.language || state.lang) })));
  const box = h("div", { id: "campaign-preview" });
  const run = () => into(box, async () => {
    const answer = await get(`/campaigns/${encodeURIComponent(id)}/preview`, { person: person.value.trim(),
      channel: channel.value || undefined, lang: lang.value });
    const message = answer.message;
    return h("div", { class: `message channel-${message.channel}` },
      message.title ? h("strong", {}, message.title) : null, h("p", { id: "campaign-preview-body" }, message.body || message.text),
      h("div", { class: "muted" }, t("campaigns.preview_facts", { person: message.person_id, channel: message.channel,
        parts: message.parts ?? 1 })), message.coupon_code ? h("div", {}, `${t("campaigns.coupon")}: ${message.coupon_code}`) : null,
      (message.notes || []).map((note) => h("div", { class: "notice" }, pick(note) || String(note))));
  });
  if (!channel.options.length) {
    return h("p", { class: "muted" }, t("campaigns.ads_only"));
  }
  return guarded("market", h("div", {}, h("div", { class: "form-row" }, field(t("campaigns.person"), person),
    field(t("campaigns.channel"), channel), field(t("campaigns.language"), lang),
    button(t("campaigns.preview"), run, { id: "campaign-preview-run" })), box));
}

function funnelChart(rows) {
  const arms = rows.map((r) => `${r.run_id} · ${r.channel} · ${tx(`arm.${r.arm}`, r.arm)}`);
  const shown = FUNNEL.slice(1).filter((m) => rows.some((r) => r[m]));
  return chartBox({ legend: { top: 0, type: "scroll" }, tooltip: { trigger: "axis" }, grid: { left: 180, right: 24, top: 40, bottom: 30 },
    yAxis: { type: "category", data: arms }, xAxis: { type: "value" },
    series: shown.map((m) => ({ name: t(`campaigns.funnel.${m}`), type: "bar", data: rows.map((r) => r[m]) })) });
}

function liftView(answer) {
  if (!answer.items.length) {
    return null;
  }
  const row = answer.items[0];
  return [h("p", { class: "verdict", id: "campaign-verdict" }, pick(row, "verdict")),
    h("div", { class: "kpis", id: "campaign-lift" },
      kpi(t("campaigns.rate_t"), pct(row.rate_t, 2)), kpi(t("campaigns.rate_c"), pct(row.rate_c, 2)),
      kpi(t("campaigns.lift"), pct(row.lift), row.lift_low !== undefined ? `${pct(row.lift_low)} ~ ${pct(row.lift_high)}` : null),
      kpi(t("campaigns.incremental_gmv"), fmt(row.incremental_gmv, 2)),
      kpi(t("campaigns.cost"), fmt(row.cost, 2)), kpi(t("campaigns.roi"), fmt(row.incremental_roi, 2))),
    sqlBlock(answer.sql)];
}

function kpiView(answer) {
  if (!answer.items.length) {
    return h("p", { class: "muted" }, t("campaigns.no_kpis"));
  }
  return [table(["channel", "arm", "audience", "sent", "delivered", "opened", "clicked", "converted", "orders", "gmv",
    "cost", "ctr", "cvr", "roi"], answer.items, { labels: Object.fromEntries(["channel", "arm", "audience", "sent",
    "delivered", "opened", "clicked", "converted", "orders", "gmv", "cost", "ctr", "cvr", "roi"].map((c) => [c,
    tx(`campaigns.kpi.${c}`, c)])), cells: { ctr: (v) => pct(v), cvr: (v) => pct(v), arm: (a) => tx(`arm.${a}`, a) } }),
  sqlBlock(answer.sql)];
}

function resultsBox(id) {
  const box = h("div", { id: "campaign-results" });
  const load = () => into(box, async () => {
    const [results, lift, kpis] = await Promise.all([
      get(`/campaigns/${encodeURIComponent(id)}/results`),
      get("/measure/lift", { campaign_id: id }).catch((error) => ({ items: [], error })),
      get("/measure/kpis", { campaign_id: id }).catch(() => ({ items: [] })),
    ]);
    if (!results.funnel.length) {
      return h("p", { class: "muted", id: "campaign-no-results" }, t("campaigns.no_results"));
    }
    const total = (m) => results.funnel.reduce((sum, r) => sum + (r[m] || 0), 0);
    return [
      h("div", { class: "kpis", id: "campaign-totals" }, ["audience", "held_out", "sent", "opened", "clicked"].map((m) =>
        kpi(t(`campaigns.funnel.${m}`), fmt(total(m)))), kpi(t("campaigns.cost"), fmt(total("cost"), 2))),
      funnelChart(results.funnel),
      table(["run_id", "channel", "arm", ...FUNNEL, "cost", "open_rate", "click_rate"], results.funnel, {
        labels: { run_id: t("campaigns.run"), channel: t("campaigns.channel"), arm: t("campaigns.kpi.arm"),
          cost: t("campaigns.cost"), open_rate: t("campaigns.open_rate"), click_rate: t("campaigns.click_rate"),
          ...Object.fromEntries(FUNNEL.map((m) => [m, t(`campaigns.funnel.${m}`)])) },
        cells: { arm: (a) => tx(`arm.${a}`, a), open_rate: (v) => pct(v), click_rate: (v) => pct(v) } }),
      h("h3", {}, t("campaigns.reasons")),
      table(["status", "reason", "deliveries"], results.reasons, { labels: { status: t("persons.status"),
        reason: t("persons.reason_out"), deliveries: t("campaigns.deliveries") },
      cells: { status: (s) => tx(`delivery.${s}`, s), reason: (r) => tx(`reason.${r}`, r) } }),
      sqlBlock(results.sql),
      h("h3", {}, t("campaigns.lift_roi")),
      lift.error ? h("p", { class: "muted", id: "campaign-no-lift" }, lift.error.message) : liftView(lift),
      h("h3", {}, t("campaigns.kpis")), kpiView(kpis),
    ];
  });
  load();
  return { box, load };
}

function actions(id, stored, results) {
  const status = h("span", { class: "muted", id: "campaign-run-status" });
  const launch = async (event) => {
    event.currentTarget.disabled = true;
    try {
      const job = await post(`/campaigns/${encodeURIComponent(id)}/run`);
      const done = await waitJob(job, (j) => clear(status, t("common.job", { status: tx(`job.${j.status}`, j.status),
        progress: j.progress == null ? "…" : pct(j.progress, 0), step: j.step || "" })));
      if (done.status === "succeeded") {
        const r = done.result || {};
        const planned = Object.entries(r.planned || {})
          .map(([step, n]) => `${tx(`campaigns.funnel.${step}`, step)} ${fmt(n)}`);
        clear(status, t("campaigns.launched", { sent: fmt(r.sent ?? 0), planned: planned.join(" · ") || "—" }));
      } else {
        clear(status, errorBox(jobError(done)));
      }
      results.load();
    } catch (error) {
      clear(status, errorBox(error));
    }
  };
  const toggle = async () => {
    const verb = stored.status === "paused" ? "resume" : "pause";
    await post(`/campaigns/${encodeURIComponent(id)}/${verb}`);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  };
  return h("div", { class: "toolbar" },
    guarded("market", button(t("campaigns.launch"), launch, { class: "primary", id: "campaign-launch",
      disabled: stored.status === "paused" ? true : undefined })),
    can("market") ? button(stored.status === "paused" ? t("campaigns.resume") : t("campaigns.pause"), toggle,
      { id: "campaign-toggle" }) : null, status);
}

function scheduleText(schedule) {
  if (schedule.kind === "once") {
    return `${t("campaigns.kind.once")} · ${new Date(schedule.at).toLocaleString(state.lang === "en" ? "en-US" : "zh-CN")}`;
  }
  const days = (schedule.on || []).join(", ");
  return `${tx(`campaigns.kind.${schedule.every}`, schedule.every)} ${days} ${schedule.at || ""}`.trim();
}

/** A job's error in the page's language (jobs keep both). */
function jobError(job) {
  const error = job.error || {};
  return { message: error[`message_${state.lang}`] || error.message || job.status, fix: error[`fix_${state.lang}`] || error.fix,
    field: error.field };
}

async function campaignPage(page, current, id) {
  const stored = await get(`/campaigns/${encodeURIComponent(id)}`);
  if (!current()) {
    return;
  }
  const d = stored.definition;
  const results = resultsBox(id);
  clear(page, h("h1", { id: "campaign-title" }, pick(d), " ", h("span", { class: `badge status-${stored.status}` },
    tx(`campaigns.status.${stored.status}`, stored.status))),
  actions(id, stored, results),
  card(t("campaigns.definition"), h("dl", { class: "facts" },
    h("dt", {}, t("campaigns.audience")), h("dd", {}, h("a", { href: `#audiences/${encodeURIComponent(d.audience.segment_id)}` },
      d.audience.segment_id), ` (${d.audience.members})`),
    h("dt", {}, t("campaigns.template")), h("dd", {}, d.template_id),
    h("dt", {}, t("campaigns.channels")), h("dd", {}, d.channels.map((c) => t(`channel.${c}`)).join(" → ")),
    h("dt", {}, t("campaigns.schedule")), h("dd", { id: "campaign-schedule-text" }, scheduleText(d.schedule)),
    h("dt", {}, t("campaigns.holdout")), h("dd", {}, pct(d.holdout, 0)),
    h("dt", {}, t("campaigns.version")), h("dd", {}, fmt(stored.version)))),
  card(t("campaigns.preview_title"), previewBox(id, d)),
  card(t("campaigns.results"), results.box));
}

export default async function campaigns(page, args, current) {
  const [first] = (args[0] || "").split("?");
  if (!first) {
    return listPage(page, current);
  }
  if (first === "new") {
    return newPage(page, current);
  }
  return campaignPage(page, current, first);
}
