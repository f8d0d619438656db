// Overview: this month's KPIs against last month, the monthly trend, the channel mix, the
// collector's live counts, audiences and campaigns — each number with the SQL behind it.
import { analysisChart, card, chartBox, clear, fmt, get, h, kpi, pct, pick, sqlBlock, t, tx } from "../core.js";

const MEASURES = ["gmv", "orders", "buyers", "aov"];

function change(now, before) {
  if (typeof now !== "number" || typeof before !== "number" || before === 0) {
    return null;
  }
  const ratio = now / before - 1;
  return h("span", { class: ratio >= 0 ? "up" : "down" }, `${ratio >= 0 ? "▲" : "▼"} ${pct(Math.abs(ratio))}`);
}

function kpis(trend) {
  const rows = trend.items;
  const last = rows[rows.length - 1] || {};
  const before = rows[rows.length - 2] || {};
  return h("div", { class: "kpis", id: "overview-kpis" },
    MEASURES.map((m) => kpi(t(`overview.${m}`), fmt(last[m], m === "aov" ? 2 : undefined),
      h("span", {}, change(last[m], before[m]), " ", t("overview.vs_previous", { month: before.month || "—" })))),
    h("p", { class: "muted" }, t("overview.month_of", { month: last.month || "—" })));
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
  const gmvTrend = { ...trend.chart, y: ["gmv"], title_zh: "", title_en: "" };
  const latest = campaigns.items.slice(-5).reverse();
  clear(page,
    h("h1", {}, t("nav.overview")),
    card(t("overview.kpis"), kpis(trend), sqlBlock(trend.sql)),
    h("div", { class: "grid2" },
      card(t("overview.trend"), analysisChart(gmvTrend, trend.items, { columnLabel: () => t("overview.gmv") })),
      card(t("overview.channel_mix"), mix(channels), sqlBlock(channels.sql))),
    card(t("overview.now"), live(health, audiences, campaigns),
      latest.length ? h("ul", { class: "plain" }, latest.map((c) => h("li", {},
        h("a", { href: `#campaigns/${encodeURIComponent(c.campaign_id)}` }, c.name || c.campaign_id), " · ",
        tx(`campaigns.status.${c.status}`, c.status)))) : h("p", { class: "muted" }, t("overview.no_campaigns"))),
    card(t("overview.audiences"), h("ul", { class: "plain" }, audiences.items.map((a) => h("li", {},
      h("a", { href: `#audiences/${encodeURIComponent(a.segment_id)}` }, pick(a)), " · ",
      t("audiences.members_on", { count: a.members ?? 0, date: a.snapshot_date ?? "—" }))))));
}
