// Overview: the last 30 days' KPIs against the 30 days before, the monthly trend, the channel
// mix, the collector's live counts, audiences and campaigns — each number with the SQL behind it.
import { analysisChart, card, chartBox, clear, fmt, get, h, kpi, pct, pick, sqlBlock, t, tx } from "../core.js";

const MEASURES = ["gmv", "orders", "buyers", "aov"];
const WINDOW_DAYS = 30;
const DAY_MS = 86400000;

function change(now, before) {
  if (typeof now !== "number" || typeof before !== "number" || before === 0) {
    return null;
  }
  const ratio = now / before - 1;
  return h("span", { class: ratio >= 0 ? "up" : "down" }, `${ratio >= 0 ? "▲" : "▼"} ${pct(Math.abs(ratio))}`);
}

function shifted(day, days) {
  return new Date(Date.parse(`${day}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/** The window's KPIs and the same measures over the window before it: two cube queries over
 * day ranges, ending on the latest day with orders (a month that has only begun would compare
 * a few days with a whole month). */
async function windows(trend) {
  const month = (trend.items[trend.items.length - 1] || {}).month;
  if (!month) {
    return null;
  }
  const days = await get("/analytics/cube", { measure: "orders", by: "day", period: String(month).slice(0, 7),
    limit: 1000 });
  if (!days.items.length) {
    return null;
  }
  const last = String(days.items[days.items.length - 1].day).slice(0, 10);
  const first = shifted(last, 1 - WINDOW_DAYS);
  const before = [shifted(first, -WINDOW_DAYS), shifted(first, -1)];
  const [now, base] = await Promise.all([[first, last], before].map(([a, b]) => get("/analytics/cube",
    { measure: MEASURES, period: `${a}..${b}` })));
  return { now: now.items[0] || {}, base: base.items[0] || {}, range: [first, last], before,
    sql: { last_day: days.sql && Object.values(days.sql)[0], current: Object.values(now.sql || {})[0],
      previous: Object.values(base.sql || {})[0] } };
}

function kpis(found) {
  const range = (pair) => `${pair[0]} – ${pair[1]}`;
  return h("div", { class: "kpis", id: "overview-kpis" },
    MEASURES.map((m) => kpi(t(`overview.${m}`), fmt(found.now[m], m === "aov" ? 2 : undefined),
      h("span", {}, change(found.now[m], found.base[m]), " ", t("overview.vs_previous", { range: range(found.before) })))),
    h("p", { class: "muted" }, t("overview.window_of", { range: range(found.range) })));
}

function mix(answer) {
  const data = answer.items.map((r) => ({ name: r.platform ?? "—", value: r.gmv }));
  return chartBox({ tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
    series: [{ type: "pie", radius: ["35%", "65%"], top: 30, data, label: { formatter: "{b} {d}%" } }] });
}

function live(health, audiences, campaigns) {
  const realtime = audiences.items.filter((a) => a.realtime).length;
  return h("div", { class: "kpis" },
    kpi(t("overview.events_loaded"), fmt(health.loaded_events), health.pending ? t("overview.loading_events") : t("overview.caught_up")),
    kpi(t("overview.audiences"), fmt(audiences.total), t("overview.realtime_audiences", { count: realtime })),
    kpi(t("overview.campaigns"), fmt(campaigns.total),
      t("overview.active_campaigns", { count: campaigns.items.filter((c) => c.status === "active").length })));
}

export default async function overview(page, args, current) {
  const trendQuery = { measure: MEASURES, by: "month", limit: 1000 };
  const [trend, channels, health, audiences, campaigns] = await Promise.all([
    get("/analytics/cube", trendQuery),
    get("/analytics/cube", { measure: "gmv", by: "platform" }),
    fetch("/health").then((r) => r.json()),
    get("/audiences", { limit: 1000 }),
    get("/campaigns", { limit: 1000 }),
  ]);
  if (!current()) {
    return;
  }
  const recent = await windows(trend);
  if (!current()) {
    return;
  }
  const gmvTrend = { ...trend.chart, y: ["gmv"], title_zh: "", title_en: "" };
  const running = recent && shifted(recent.range[1], 1).slice(0, 7) === recent.range[1].slice(0, 7);
  const months = running ? trend.items.slice(0, -1) : trend.items; // a month under way would plunge the line
  const latest = campaigns.items.slice(-5).reverse();
  clear(page,
    h("h1", {}, t("nav.overview")),
    card(t("overview.kpis"), recent ? [kpis(recent), sqlBlock(recent.sql)] : h("p", { class: "muted" },
      t("common.empty"))),
    h("div", { class: "grid2" },
      card(t("overview.trend"), analysisChart(gmvTrend, months, { columnLabel: () => t("overview.gmv") }),
        running ? h("p", { class: "muted" }, t("overview.month_running", { day: recent.range[1] })) : null),
      card(t("overview.channel_mix"), mix(channels), sqlBlock(channels.sql))),
    card(t("overview.now"), live(health, audiences, campaigns),
      latest.length ? h("ul", { class: "plain" }, latest.map((c) => h("li", {},
        h("a", { href: `#campaigns/${encodeURIComponent(c.campaign_id)}` }, c.name || c.campaign_id), " · ",
        tx(`campaigns.status.${c.status}`, c.status)))) : h("p", { class: "muted" }, t("overview.no_campaigns"))),
    card(t("overview.audiences"), h("ul", { class: "plain" }, audiences.items.map((a) => h("li", {},
      h("a", { href: `#audiences/${encodeURIComponent(a.segment_id)}` }, pick(a)), " · ",
      t("audiences.members_on", { count: a.members ?? 0, date: a.snapshot_date ?? "—" }))))));
}
