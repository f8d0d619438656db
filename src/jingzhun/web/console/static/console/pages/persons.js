// Person 360: find anyone by any identifier (person id, phone, e-mail, member id, TYPE:VALUE)
// and see identities, traits, tags, scores, recommendations, timeline and campaigns received.
import {
  ApiError, analysisChart, card, clear, errorBox, get, h, into, loading, pager, pick, sqlBlock, t, table, tx,
} from "../core.js";

const SCORE_PERCENT = new Set(["churn_90d", "purchase_propensity_30d", "p_alive"]);

function searchForm(value) {
  const input = h("input", { type: "search", id: "person-search", name: "identifier", value: value || "",
    placeholder: t("persons.placeholder"), autocomplete: "off", required: true });
  const form = h("form", { class: "search", id: "person-search-form" }, input,
    h("button", { type: "submit", class: "primary", id: "person-search-submit" }, t("persons.search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = input.value.trim();
    if (wanted) {
      window.location.hash = `#persons/${encodeURIComponent(wanted)}`;
    }
  });
  return form;
}

function traitValue(name, view) {
  const found = view.traits.find((row) => row.trait === name);
  return found ? found.value : null;
}

function header(view) {
  const name = traitValue("name", view);
  const facts = ["gender", "age", "city", "member_level", "rfm_class"].map((k) => [k, traitValue(k, view)])
    .filter(([, v]) => v !== null && v !== undefined && v !== "");
  return h("div", { class: "person-head", id: "person-head" },
    h("div", { class: "avatar" }, (name || "?").slice(0, 1)),
    h("div", {}, h("h2", { id: "person-name" }, name || view.person_id),
      h("div", { class: "muted" }, h("code", { id: "person-id" }, view.person_id)),
      h("div", { class: "chips" }, facts.map(([k, v]) => h("span", { class: "chip" }, `${tx(`trait.${k}`, k)}: ${v}`)))));
}

function tagChips(tags) {
  if (!tags.length) {
    return h("p", { class: "muted" }, t("common.empty"));
  }
  return h("div", { class: "chips", id: "person-tags" }, tags.map((tag) => h("a", {
    class: `chip tag-${tag.category}`, href: `#tags/${encodeURIComponent(tag.tag_id)}`, title: tag.tag_id,
  }, pick(tag) || tag.tag_id, tag.value ? `: ${tag.value}` : "")));
}

function scoreChart(scores) {
  const shown = scores.filter((s) => SCORE_PERCENT.has(s.model));
  const others = scores.filter((s) => !SCORE_PERCENT.has(s.model));
  const spec = { kind: "bar", x: "model", y: ["score"], title_zh: "概率类评分", title_en: "Probability scores" };
  return [
    analysisChart(spec, shown.map((s) => ({ model: tx(`score.${s.model}`, s.model), score: Number(s.score.toFixed(4)) })),
      { columnLabel: () => t("persons.score") }),
    table(["model", "score", "model_version", "computed_at"], others.concat(shown), {
      labels: { model: t("persons.model"), score: t("persons.score"), model_version: t("persons.version"),
        computed_at: t("persons.computed_at") },
      cells: { model: (m) => tx(`score.${m}`, m) } }),
  ];
}

function recommendations(view) {
  return table(["kind", "rank", "name", "category", "price", "reason"], view.recommendations.map((r) => ({
    ...r, reason: pick(r, "reason") })), {
    labels: { kind: t("persons.rec_kind"), rank: "#", name: t("persons.product"), category: t("persons.category"),
      price: t("persons.price"), reason: t("persons.reason") },
    cells: { kind: (k) => tx(`recommend.${k}`, k) } });
}

function timeline(identifier, first) {
  const box = h("div", { id: "person-timeline" });
  const draw = (answer) => clear(box, table(["at", "kind", "what", "channel", "record_id"], answer.items, {
    labels: { at: t("persons.at"), kind: t("persons.kind"), what: t("persons.what"), channel: t("persons.channel"),
      record_id: t("persons.record") },
    cells: { kind: (k) => tx(`timeline.${k}`, k), at: (v) => String(v).replace("T", " ").slice(0, 19) } }),
  pager(answer, (offset) => into(box, async () => {
    const next = await get(`/persons/${encodeURIComponent(identifier)}/timeline`, { limit: 20, offset });
    draw(next);
    return [...box.childNodes];
  })));
  draw({ items: first.slice(0, 20), total: first.length, limit: 20, offset: 0 });
  return box;
}

function campaignsReceived(rows) {
  return table(["campaign_name", "channel", "variant", "status", "reason", "sent_at", "opened", "clicked"], rows, {
    labels: { campaign_name: t("persons.campaign"), channel: t("persons.channel"), variant: t("persons.variant"),
      status: t("persons.status"), reason: t("persons.reason_out"), sent_at: t("persons.sent_at"),
      opened: t("persons.opened"), clicked: t("persons.clicked") },
    cells: { opened: (v) => (v ? "✓" : ""), clicked: (v) => (v ? "✓" : ""),
      status: (s) => tx(`delivery.${s}`, s), reason: (r) => (r ? tx(`reason.${r}`, r) : "") },
    empty: t("persons.no_campaigns") });
}

function view360(view, identifier) {
  const sql = view.sql || {};
  return [
    header(view),
    h("div", { class: "grid2" },
      card(t("persons.identities"), table(["id_type", "id_value", "strength", "last_seen"], view.identities, {
        labels: { id_type: t("persons.id_type"), id_value: t("persons.id_value"), strength: t("persons.strength"),
          last_seen: t("persons.last_seen") },
        cells: { id_type: (v) => tx(`identifier.${v}`, v), last_seen: (v) => String(v ?? "").slice(0, 10) } }),
      sqlBlock({ identities: sql.identities })),
      card(t("persons.tags"), tagChips(view.tags), sqlBlock({ tags: sql.tags }))),
    h("div", { class: "grid2" },
      card(t("persons.traits"), h("div", { class: "scroll" }, table(["trait", "value", "source"], view.traits, {
        labels: { trait: t("persons.trait"), value: t("persons.value"), source: t("persons.source") },
        cells: { trait: (v) => tx(`trait.${v}`, v) } })), sqlBlock({ traits: sql.traits })),
      card(t("persons.scores"), scoreChart(view.scores), sqlBlock({ scores: sql.scores }))),
    card(t("persons.recommendations"), recommendations(view), sqlBlock({ recommendations: sql.recommendations })),
    card(t("persons.campaigns"), campaignsReceived(view.campaigns), sqlBlock({ campaigns: sql.campaigns })),
    card(t("persons.timeline"), timeline(identifier, view.timeline), sqlBlock({ timeline: sql.timeline })),
  ];
}

export default async function persons(page, args, current) {
  const identifier = args[0];
  const result = h("div", { id: "person-result" });
  clear(page, h("h1", {}, t("nav.persons")), card(null, searchForm(identifier),
    h("p", { class: "muted" }, t("persons.hint"))), result);
  if (!identifier) {
    return;
  }
  clear(result, loading());
  try {
    const view = await get(`/persons/${encodeURIComponent(identifier)}`, { timeline: 200, recommendations: 5 });
    if (current()) {
      clear(result, view360(view, identifier));
    }
  } catch (error) {
    if (!current()) {
      return;
    }
    const missing = error instanceof ApiError && error.status === 404;
    clear(result, missing ? h("p", { class: "notice", id: "person-missing" }, t("persons.not_found", { identifier }))
      : errorBox(error));
  }
}
