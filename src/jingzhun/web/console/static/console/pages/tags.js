// Tag manager: the library by category with holders, one tag's definition, holders, trend and
// (for value tags) the spread of its values; marketers recompute tags as a background job.
import {
  analysisView, button, card, clear, errorBox, fmt, get, guarded, h, into, pager, pick, post, sqlBlock, t, table,
  waitJob,
} from "../core.js";

const CATEGORIES = ["base", "marketing", "intent", "scenario", "predictive"];

function library(tags, chosen) {
  return CATEGORIES.map((category) => {
    const members = tags.filter((tag) => tag.category === category);
    if (!members.length) {
      return null;
    }
    return h("div", { class: "tag-group" }, h("h3", {}, t(`tags.category.${category}`)),
      h("div", { class: "chips" }, members.map((tag) => h("a", {
        class: `chip tag-${category}${tag.tag_id === chosen ? " selected" : ""}`,
        href: `#tags/${encodeURIComponent(tag.tag_id)}`, dataset: { tag: tag.tag_id },
      }, pick(tag), h("span", { class: "count" }, fmt(tag.holders ?? 0))))));
  });
}

function holders(tagId) {
  const box = h("div", { id: "tag-holders" });
  const load = (offset) => into(box, async () => {
    const answer = await get(`/tags/${encodeURIComponent(tagId)}/holders`, { limit: 20, offset });
    return [table(["person_id", "value", "valid_from"], answer.items, {
      labels: { person_id: t("tags.person"), value: t("tags.value"), valid_from: t("tags.since") },
      cells: { person_id: (id) => h("a", { href: `#persons/${encodeURIComponent(id)}` }, id),
        valid_from: (v) => String(v).slice(0, 10) } }), pager(answer, load), sqlBlock(answer.sql)];
  });
  load(0);
  return box;
}

async function detail(tag) {
  const [trend, spread] = await Promise.all([
    get(`/tags/${encodeURIComponent(tag.tag_id)}/trend`),
    tag.kind === "value" || tag.kind === "rule" ? get("/analytics/cube", { measure: "buyers", by: `tag:${tag.tag_id}` })
      .catch(() => null) : null,
  ]);
  const trendRows = trend.items.map((r) => ({ day: r.day, holders: r.holders }));
  const trendSpec = { kind: "line", x: "day", y: ["holders"], title_zh: "持有人数趋势", title_en: "Holders over time" };
  return [
    h("h2", { id: "tag-title" }, pick(tag), " ", h("code", {}, tag.tag_id)),
    h("p", {}, pick(tag, "description")),
    h("dl", { class: "facts" },
      h("dt", {}, t("tags.category")), h("dd", {}, t(`tags.category.${tag.category}`)),
      h("dt", {}, t("tags.kind")), h("dd", {}, tag.kind),
      h("dt", {}, t("tags.version")), h("dd", {}, fmt(tag.version)),
      h("dt", {}, t("tags.holders")), h("dd", { id: "tag-holder-count" }, fmt(tag.holders))),
    h("div", { class: "grid2" },
      card(t("tags.trend"), analysisView({ ...trend, columns: ["day", "holders"], items: trendRows, chart: trendSpec })),
      spread && spread.items.length > 1 ? card(t("tags.buyers_by_value"), analysisView(spread)) : null),
    card(t("tags.holders"), holders(tag.tag_id)),
  ];
}

function recompute(status) {
  return guarded("market", button(t("tags.recompute"), async (event) => {
    event.currentTarget.disabled = true;
    try {
      const job = await post("/tags/apply", {});
      const done = await waitJob(job, (j) => clear(status, t("common.job", {
        status: j.status, progress: j.progress == null ? "…" : `${Math.round(j.progress * 100)}%`, step: j.step || "" })));
      clear(status, done.status === "succeeded" ? t("tags.recomputed") : errorBox(done.error || done.status));
    } catch (error) {
      clear(status, errorBox(error));
    }
  }, { id: "tags-recompute" }));
}

export default async function tags(page, args, current) {
  const answer = await get("/tags", { limit: 1000 });
  if (!current()) {
    return;
  }
  const chosen = answer.items.find((tag) => tag.tag_id === args[0]);
  const side = h("div", { id: "tag-detail" });
  const status = h("span", { class: "muted", id: "tags-status" });
  clear(page, h("h1", {}, t("nav.tags")),
    h("div", { class: "toolbar" }, h("span", {}, t("tags.count", { count: answer.total })), recompute(status), status),
    h("div", { class: "grid-side" }, card(t("tags.library"), library(answer.items, args[0]), sqlBlock(answer.sql)),
      side));
  if (chosen) {
    into(side, () => detail(chosen));
  } else {
    clear(side, card(null, h("p", { class: "muted" }, t("tags.pick"))));
  }
}
