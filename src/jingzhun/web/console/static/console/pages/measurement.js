// Measurement: campaign KPIs by channel, lift of every campaign against its holdout, which
// channels earn the credit for orders (rules and Markov removal effects), and how to split the
// ad budget — from the measure stage, each with its SQL.
import { card, chartBox, clear, fmt, get, h, into, kpi, pct, pick, sqlBlock, t, table, tx } from "../core.js";

const TABS = ["kpis", "lift", "attribution", "budget"];

async function kpisView() {
  const answer = await get("/measure/kpis", { by: ["channel"], limit: 1000 });
  if (!answer.items.length) {
    return h("p", { class: "muted" }, t("measure.no_kpis"));
  }
  const channels = answer.items.map((r) => tx(`channel.${r.channel}`, r.channel));
  return [chartBox({ legend: { top: 0 }, tooltip: { trigger: "axis" }, xAxis: { type: "category", data: channels },
    yAxis: [{ type: "value" }, { type: "value", axisLabel: { formatter: (v) => `${(v * 100).toFixed(0)}%` } }],
    series: [{ name: t("campaigns.kpi.delivered"), type: "bar", data: answer.items.map((r) => r.delivered) },
      { name: t("campaigns.kpi.converted"), type: "bar", data: answer.items.map((r) => r.converted) },
      { name: t("campaigns.kpi.ctr"), type: "line", yAxisIndex: 1, data: answer.items.map((r) => r.ctr) },
      { name: t("campaigns.kpi.cvr"), type: "line", yAxisIndex: 1, data: answer.items.map((r) => r.cvr) }] }),
  table(answer.columns, answer.items, { labels: Object.fromEntries(answer.columns.map((c) => [c, tx(`campaigns.kpi.${c}`, c)])),
    cells: { ctr: (v) => pct(v), cvr: (v) => pct(v), channel: (c) => tx(`channel.${c}`, c) } }),
  sqlBlock(answer.sql)];
}

async function liftView() {
  const answer = await get("/measure/lift", { limit: 1000 });
  const rows = answer.items;
  const verdicts = {};
  rows.forEach((r) => { verdicts[r.verdict] = (verdicts[r.verdict] || 0) + 1; });
  const withLift = rows.filter((r) => typeof r.lift === "number").slice(-40);
  return [h("div", { class: "kpis" }, kpi(t("measure.campaigns"), fmt(rows.length)),
    Object.entries(verdicts).map(([v, n]) => kpi(tx(`measure.verdict.${v}`, v), fmt(n)))),
  chartBox({ title: { text: t("measure.lift_chart"), textStyle: { fontSize: 14 } }, tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: withLift.map((r) => r.campaign_id), axisLabel: { rotate: 45 } },
    yAxis: { type: "value", axisLabel: { formatter: (v) => `${(v * 100).toFixed(0)}%` } },
    series: [{ type: "bar", name: t("campaigns.lift"), data: withLift.map((r) => r.lift) }] }),
  table(["campaign_id", "status", "units_treatment", "units_control", "rate_t", "rate_c", "lift", "incremental_gmv",
    "incremental_roi", "verdict"], rows.map((r) => ({ ...r, verdict: pick(r, "verdict") })), {
    labels: { campaign_id: t("measure.campaign"), status: t("campaigns.status"), units_treatment: t("measure.treated"),
      units_control: t("measure.held_out"), rate_t: t("campaigns.rate_t"), rate_c: t("campaigns.rate_c"),
      lift: t("campaigns.lift"), incremental_gmv: t("campaigns.incremental_gmv"), incremental_roi: t("campaigns.roi"),
      verdict: t("measure.verdict") },
    cells: { rate_t: (v) => pct(v, 2), rate_c: (v) => pct(v, 2), lift: (v) => pct(v),
      campaign_id: (id) => h("a", { href: `#campaigns/${encodeURIComponent(id)}` }, id) } }),
  sqlBlock(answer.sql)];
}

async function attributionView() {
  const answer = await get("/measure/attribution", { limit: 1 });
  const byChannel = {};
  for (const row of answer.channels) {
    byChannel[row.touch_channel] = byChannel[row.touch_channel] || {};
    byChannel[row.touch_channel][row.model] = (byChannel[row.touch_channel][row.model] || 0) + row.value;
  }
  const models = [...new Set(answer.channels.map((r) => r.model))];
  const channels = Object.keys(byChannel).sort();
  const rows = channels.map((c) => ({ touch_channel: c, ...Object.fromEntries(models.map((m) => [m, byChannel[c][m] || 0])) }));
  return [chartBox({ legend: { top: 0 }, tooltip: { trigger: "axis" }, grid: { left: 150, right: 24, top: 40, bottom: 30 },
    yAxis: { type: "category", data: channels }, xAxis: { type: "value" },
    series: models.map((m) => ({ name: tx(`measure.model.${m}`, m), type: "bar", data: channels.map((c) => byChannel[c][m] || 0) })) },
  { tall: true }),
  table(["touch_channel", ...models], rows, { labels: Object.fromEntries(models.map((m) => [m, tx(`measure.model.${m}`, m)])) }),
  h("h3", {}, t("measure.removal")),
  table(["touch_channel", "removal_effect", "share"], answer.removal, { cells: { share: (v) => pct(v) } }),
  sqlBlock(answer.sql)];
}

async function budgetView() {
  const answer = await get("/measure/budget", { limit: 1000 });
  const rows = answer.items;
  return [h("div", { class: "kpis" }, kpi(t("measure.daily_budget"), fmt(answer.total_budget, 0)),
    kpi(t("measure.gain"), fmt(answer.gain_per_day, 0), `${fmt(answer.gain_low, 0)} ~ ${fmt(answer.gain_high, 0)}`),
    kpi(t("measure.gain_positive"), pct(answer.gain_positive, 0))),
  chartBox({ legend: { top: 0 }, tooltip: { trigger: "axis" }, xAxis: { type: "category", data: rows.map((r) => r.channel) },
    yAxis: { type: "value" }, series: [{ name: t("measure.current"), type: "bar", data: rows.map((r) => r.current) },
      { name: t("measure.recommended"), type: "bar", data: rows.map((r) => r.recommended) }] }),
  table(["channel", "current", "recommended", "change", "marginal_roi_current", "marginal_roi_recommended"], rows, {
    labels: { channel: t("measure.channel"), current: t("measure.current"), recommended: t("measure.recommended"),
      change: t("measure.change"), marginal_roi_current: t("measure.mroi_now"),
      marginal_roi_recommended: t("measure.mroi_after") } }),
  h("h3", {}, t("measure.curves")), table(Object.keys(answer.curves[0] || {}), answer.curves), sqlBlock(answer.sql)];
}

const VIEWS = { kpis: kpisView, lift: liftView, attribution: attributionView, budget: budgetView };

export default async function measurement(page, args) {
  const tab = TABS.includes(args[0]) ? args[0] : "kpis";
  const body = h("div", { id: `measure-${tab}` });
  clear(page, h("h1", {}, t("nav.measurement")),
    h("nav", { class: "tabs" }, TABS.map((key) => h("a", { href: `#measurement/${key}`, class: key === tab ? "active" : null },
      t(`measure.tab.${key}`)))),
    card(t(`measure.tab.${tab}`), h("p", { class: "muted" }, t(`measure.about.${tab}`)), body));
  await into(body, VIEWS[tab]);
}
