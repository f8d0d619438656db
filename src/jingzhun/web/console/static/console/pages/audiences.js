// Audiences: the list, overlap between audiences, and one audience (members, changes, export
// to Excel, sub-groups, look-alikes); the builder sizes a rule live while it is edited.
import {
  api, button, can, card, chartBox, clear, debounce, downloadUrl, errorBox, field, fmt, get, guarded, h, into, kpi,
  pager, pct, pick, post, readings, sqlBlock, t, table, waitJob,
} from "../core.js";
import { RuleEditor } from "./rule_editor.js";

const PREVIEW_DELAY_MS = 400;
let catalogCache = null;

async function catalog() {
  catalogCache = catalogCache || await get("/console/catalog");
  return catalogCache;
}

function memberLink(id) {
  return h("a", { href: `#persons/${encodeURIComponent(id)}` }, id);
}

// ---- the list and overlap -----------------------------------------------------------------

function overlapTool(audiences) {
  const box = h("div", { id: "overlap-result" });
  const boxes = audiences.map((a, i) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: a.segment_id, checked: i < 3 ? true : undefined }), pick(a)));
  const run = () => into(box, async () => {
    const ids = boxes.map((b) => b.firstChild).filter((c) => c.checked).map((c) => c.value);
    if (ids.length < 2) {
      return h("p", { class: "muted" }, t("audiences.pick_two"));
    }
    const answer = await get("/audiences/overlap", { segment_ids: ids });
    const names = Object.fromEntries(audiences.map((a) => [a.segment_id, pick(a)]));
    const data = [];
    ids.forEach((row, y) => ids.forEach((column, x) => data.push([x, y, answer.counts[row][column]])));
    return [chartBox({ tooltip: { position: "top" }, grid: { left: 200, right: 20, top: 10, bottom: 90 },
      xAxis: { type: "category", data: ids.map((id) => names[id]), axisLabel: { rotate: 20, width: 120, overflow: "truncate" } },
      yAxis: { type: "category", data: ids.map((id) => names[id]), axisLabel: { width: 180, overflow: "truncate" } },
      visualMap: { min: 0, max: Math.max(...data.map((d) => d[2]), 1), show: false },
      series: [{ type: "heatmap", data, label: { show: true } }] }, { tall: true }),
    h("p", { class: "muted" }, t("audiences.overlap_note")), sqlBlock(answer.sql)];
  });
  return [h("div", { class: "checks" }, boxes), button(t("audiences.compare"), run, { id: "overlap-run" }), box];
}

async function listPage(page, current) {
  const answer = await get("/audiences", { limit: 1000 });
  if (!current()) {
    return;
  }
  const create = guarded("market", h("a", { class: "button primary", href: "#audiences/new", id: "audience-new" },
    t("audiences.new")));
  clear(page, h("h1", {}, t("nav.audiences")), h("div", { class: "toolbar" }, create),
    card(t("audiences.list"), table(["name", "members", "snapshot_date", "realtime", "version"],
      answer.items.map((a) => ({ ...a, name: pick(a) })), {
        labels: { name: t("audiences.name"), members: t("audiences.members"), snapshot_date: t("audiences.snapshot"),
          realtime: t("audiences.realtime"), version: t("audiences.version") },
        cells: { realtime: (v, row) => (v ? t("audiences.live_count", { count: row.live_members ?? 0 }) : "") },
        onRow: (row) => { window.location.hash = `#audiences/${encodeURIComponent(row.segment_id)}`; } })),
    card(t("audiences.overlap"), overlapTool(answer.items)));
}

// ---- the builder --------------------------------------------------------------------------

function previewPanel() {
  const size = h("div", { class: "size", id: "audience-size" }, "—");
  const info = h("div", { class: "muted", id: "audience-size-info" });
  const sample = h("div", { id: "audience-sample" });
  const panel = h("div", { class: "preview", id: "audience-preview" }, h("div", { class: "kpi-label" },
    t("builder.live_size")), size, info, sample);
  let asked = 0;
  const refresh = debounce(async (rule) => {
    const mine = ++asked;
    panel.classList.add("busy");
    try {
      const answer = await post("/audiences/preview", { rule, sample: 5 });
      if (mine !== asked) {
        return;
      }
      clear(size, fmt(answer.size));
      clear(info, t("builder.size_info", { share: pct(answer.share), population: answer.population,
        seconds: answer.seconds.toFixed(2) }));
      const rows = answer.sample || [];
      clear(sample, h("h3", {}, t("builder.sample")), table(["person_id", "name"], rows,
        { labels: { person_id: t("tags.person"), name: t("trait.name") }, cells: { person_id: memberLink } }),
      sqlBlock(answer.sql));
      panel.dataset.size = String(answer.size);
    } catch (error) {
      if (mine === asked) {
        clear(size, "—");
        clear(info, errorBox(error));
        clear(sample);
        delete panel.dataset.size;
      }
    } finally {
      if (mine === asked) {
        panel.classList.remove("busy");
      }
    }
  }, PREVIEW_DELAY_MS);
  return { panel, refresh };
}

function saveForm(existing, editor, status) {
  const id = h("input", { type: "text", id: "audience-id", value: existing ? existing.segment_id : "",
    pattern: "[a-z0-9_]{2,63}", required: true, disabled: existing ? true : undefined });
  const zh = h("input", { type: "text", id: "audience-name-zh", value: existing ? existing.name_zh : "" });
  const en = h("input", { type: "text", id: "audience-name-en", value: existing ? existing.name_en : "" });
  const save = async () => {
    const definition = { segment_id: id.value.trim(), name_zh: zh.value.trim() || id.value.trim(),
      name_en: en.value.trim() || id.value.trim(), rule: editor.rule() };
    try {
      clear(status, t("builder.saving"));
      if (existing) {
        await api("PUT", `/audiences/${encodeURIComponent(definition.segment_id)}`, { body: { ...existing, ...definition } });
      } else {
        await post("/audiences", definition);
      }
      const job = await post(`/audiences/${encodeURIComponent(definition.segment_id)}/snapshot`);
      const done = await waitJob(job, (j) => clear(status, t("builder.snapshotting",
        { progress: j.progress == null ? "…" : pct(j.progress, 0) })));
      if (done.status !== "succeeded") {
        throw done.error || new Error(done.status);
      }
      catalogCache = null;
      window.location.hash = `#audiences/${encodeURIComponent(definition.segment_id)}`;
    } catch (error) {
      clear(status, errorBox(error));
    }
  };
  return h("div", { class: "form-row" }, field(t("builder.segment_id"), id, t("builder.segment_id_hint")),
    field(t("builder.name_zh"), zh), field(t("builder.name_en"), en),
    guarded("market", button(t("builder.save"), save, { class: "primary", id: "audience-save" })));
}

async function builderPage(page, current, existing) {
  const found = await catalog();
  if (!current()) {
    return;
  }
  const status = h("div", { id: "audience-save-status" });
  const { panel, refresh } = previewPanel();
  const live = can("analyze");
  const editor = new RuleEditor(found, existing ? structuredClone(existing.rule) : null, (rule) => live && refresh(rule));
  clear(page, h("h1", {}, existing ? t("builder.edit", { name: pick(existing) }) : t("builder.title")),
    h("div", { class: "grid-builder" },
      card(t("builder.rule"), h("p", { class: "muted" }, t("builder.hint")), editor.box),
      card(t("builder.preview"), live ? panel : guarded("analyze", null))),
    card(t("builder.save_title"), saveForm(existing, editor, status), status));
  if (live) {
    refresh(editor.rule());
  }
}

// ---- one audience -------------------------------------------------------------------------

function membersBox(id) {
  const box = h("div", { id: "audience-members" });
  const load = (offset) => into(box, async () => {
    const answer = await get(`/audiences/${encodeURIComponent(id)}/members`, { limit: 20, offset });
    return [table(answer.columns, answer.items, { cells: { person_id: memberLink } }), pager(answer, load),
      sqlBlock(answer.sql)];
  });
  load(0);
  return box;
}

function changesBox(id) {
  const box = h("div", {});
  into(box, async () => {
    const answer = await get(`/audiences/${encodeURIComponent(id)}/changes`, { limit: 20 });
    return [h("div", { class: "kpis" }, kpi(t("audiences.entered"), fmt(answer.entered)),
      kpi(t("audiences.exited"), fmt(answer.exited)), kpi(t("audiences.between"), `${answer.since ?? "—"} → ${answer.until ?? "—"}`)),
    table(answer.columns, answer.items, { cells: { person_id: memberLink } }), sqlBlock(answer.sql)];
  });
  return box;
}

function clustersBox(id) {
  const box = h("div", { id: "audience-clusters" });
  const run = () => into(box, async () => {
    const answer = await post("/audiences/cluster", { segment_id: id, assignments: 0 });
    return [h("p", {}, t("audiences.clusters_found", { k: answer.k, silhouette: answer.silhouette.toFixed(3) })),
      chartBox({ tooltip: { trigger: "item" }, series: [{ type: "pie", radius: "60%",
        data: answer.clusters.map((c) => ({ name: `#${c.cluster}`, value: c.size })) }] }),
      table(["cluster", "size", "share", "description"], answer.clusters.map((c) => ({ ...c,
        description: pick(c, "description") })), { labels: { cluster: "#", size: t("audiences.members"),
        share: t("audiences.share"), description: t("audiences.description") }, cells: { share: (v) => pct(v) } }),
      sqlBlock(answer.sql)];
  });
  return [guarded("analyze", button(t("audiences.cluster"), run, { id: "audience-cluster" })), box];
}

function lookalikeBox(id) {
  const box = h("div", { id: "audience-lookalike" });
  const size = h("input", { type: "number", min: 1, max: 100000, value: 200, class: "short" });
  const run = () => into(box, async () => {
    const answer = await post(`/audiences/${encodeURIComponent(id)}/lookalike`, { top_n: Number(size.value), rows: 20 });
    const m = answer.metrics;
    return [h("div", { class: "kpis" }, kpi(t("audiences.found"), fmt(answer.found)),
      kpi(t("audiences.auc"), fmt(m.holdout_auc, 3)), kpi(t("audiences.recall_decile"), pct(m.holdout_recall_top_decile))),
    readings(answer.notes),
    table(["name", "gain_share", "seed_mean", "population_mean"], answer.drivers.slice(0, 10).map((d) => ({ ...d,
      name: pick(d) })), { labels: { name: t("audiences.driver"), gain_share: t("audiences.gain"),
      seed_mean: t("audiences.seed_mean"), population_mean: t("audiences.population_mean") },
    cells: { gain_share: (v) => pct(v) } }),
    table(["rank", "person_id", "score"], answer.ranked, { cells: { person_id: memberLink } }), sqlBlock(answer.sql)];
  });
  return [guarded("analyze", h("span", {}, field(t("audiences.lookalike_size"), size),
    button(t("audiences.lookalike_run"), run, { id: "audience-lookalike-run" }))), box];
}

function exports(id) {
  const link = (format) => h("a", { class: "button", href: downloadUrl(`/audiences/${encodeURIComponent(id)}/export`,
    { format }), download: `${id}.${format}`, id: `audience-export-${format}` }, t(`audiences.export_${format}`));
  return guarded("analyze", h("span", {}, link("xlsx"), " ", link("csv")));
}

async function audiencePage(page, current, id) {
  const answer = await get(`/audiences/${encodeURIComponent(id)}`);
  if (!current()) {
    return;
  }
  const definition = answer.definition;
  const summary = answer.summary || {};
  const edit = guarded("market", h("a", { class: "button", href: `#audiences/${encodeURIComponent(id)}/edit` },
    t("audiences.edit")));
  clear(page, h("h1", { id: "audience-title" }, pick(definition)),
    h("div", { class: "toolbar" }, edit, exports(id), h("a", { class: "button", href: `#campaigns/new?audience=${encodeURIComponent(id)}` },
      t("audiences.to_campaign"))),
    h("div", { class: "kpis" }, kpi(t("audiences.members"), fmt(summary.members ?? 0)),
      kpi(t("audiences.snapshot"), summary.snapshot_date ?? "—"), kpi(t("audiences.version"), fmt(summary.version))),
    card(t("audiences.rule"), h("pre", { class: "rule" }, JSON.stringify(definition.rule, null, 2))),
    card(t("audiences.members"), membersBox(id)),
    card(t("audiences.changes"), changesBox(id)),
    h("div", { class: "grid2" }, card(t("audiences.clusters"), clustersBox(id)),
      card(t("audiences.lookalike"), lookalikeBox(id))));
}

export default async function audiences(page, args, current) {
  if (!args[0]) {
    return listPage(page, current);
  }
  if (args[0] === "new") {
    return builderPage(page, current, null);
  }
  if (args[1] === "edit") {
    const answer = await get(`/audiences/${encodeURIComponent(args[0])}`);
    return builderPage(page, current, answer.definition);
  }
  return audiencePage(page, current, args[0]);
}
