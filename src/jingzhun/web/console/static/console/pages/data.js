// Data: sources and their write keys, file imports with progress, the quarantine (view a
// record, retry), inventory data quality, and pipeline runs. Admin-only parts say so to others.
import {
  api, button, can, card, chartBox, clear, errorBox, field, fmt, get, h, into, pager, pct, pick, post, select, sqlBlock,
  state, t, table, tx, waitJob,
} from "../core.js";

const TABS = ["sources", "imports", "quarantine", "quality", "pipeline"];
const ADMIN_TABS = new Set(["sources", "imports", "quarantine", "pipeline"]);

function jobStatus(box) {
  return (job) => {
    const fill = h("span", { class: "fill" });
    fill.style.width = `${Math.round((job.progress ?? 0) * 100)}%`; // CSSOM: allowed under the page's CSP
    clear(box, h("div", { class: "progress" }, h("div", { class: "bar" }, fill),
      h("span", {}, t("common.job", { status: tx(`job.${job.status}`, job.status),
        progress: job.progress == null ? "…" : pct(job.progress, 0), step: job.step || "" }))));
  };
}

/** A job's answer: its result as a table of facts, or its error in the page's language. */
function jobOutcome(job) {
  if (job.status !== "succeeded") {
    const e = job.error || {};
    return errorBox({ message: e[`message_${state.lang}`] || e.message || job.status, fix: e[`fix_${state.lang}`] || e.fix,
      field: e.field });
  }
  const facts = Object.entries(job.result || {}).filter(([k, v]) => k !== "sql" && typeof v !== "object");
  return [h("p", { class: "notice" }, t("data.job_done")), h("dl", { class: "facts" },
    facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, fmt(v))])), sqlBlock((job.result || {}).sql)];
}

function paged(path, query, options = {}) {
  const box = h("div", {});
  const load = (offset) => into(box, async () => {
    const answer = await get(path, { ...query, limit: 20, offset });
    return [table(options.columns || answer.columns, answer.items, options), pager(answer, load), sqlBlock(answer.sql)];
  });
  load(0);
  return { box, reload: () => load(0) };
}

async function sourcesTab() {
  const list = paged("/sources", {});
  const name = h("input", { type: "text", id: "source-name", placeholder: "web-shop" });
  const kind = select(["web", "app", "miniprogram", "server"].map((k) => ({ value: k, label: t(`data.kind.${k}`) })));
  const created = h("div", { id: "source-created" });
  const add = async () => {
    try {
      const source = await post("/sources", { name: name.value.trim(), kind: kind.value });
      clear(created, h("div", { class: "notice" }, t("data.write_key_once"), h("pre", { id: "write-key" }, source.write_key)));
      list.reload();
    } catch (error) {
      clear(created, errorBox(error));
    }
  };
  return [h("div", { class: "form-row" }, field(t("data.source_name"), name), field(t("data.source_kind"), kind),
    button(t("data.add_source"), add, { class: "primary", id: "source-add" })), created, list.box];
}

async function importsTab() {
  const kinds = await get("/imports/kinds");
  const kind = select(kinds.map((k) => ({ value: k, label: k })), { id: "import-kind" });
  const file = h("input", { type: "file", id: "import-file" });
  const encoding = select([{ value: "", label: t("data.encoding_auto") }, { value: "utf-8", label: "UTF-8" },
    { value: "gbk", label: "GBK" }, { value: "gb18030", label: "GB18030" }]);
  const progress = h("div", { id: "import-progress" });
  const list = paged("/imports", {}, { columns: ["kind", "status", "rows_read", "rows_loaded", "rows_quarantined",
    "rows_duplicate", "started_at", "finished_at", "file_path"] });
  const upload = async () => {
    if (!file.files.length) {
      clear(progress, errorBox({ message: t("data.pick_file") }));
      return;
    }
    const form = new FormData();
    form.append("kind", kind.value);
    form.append("file", file.files[0]);
    if (encoding.value) {
      form.append("encoding", encoding.value);
    }
    try {
      const job = await api("POST", "/imports", { form });
      const done = await waitJob(job, jobStatus(progress));
      clear(progress, jobOutcome(done));
      list.reload();
    } catch (error) {
      clear(progress, errorBox(error));
    }
  };
  return [h("div", { class: "form-row" }, field(t("data.import_kind"), kind), field(t("data.file"), file),
    field(t("data.encoding"), encoding), button(t("data.upload"), upload, { class: "primary", id: "import-upload" })),
  progress, list.box];
}

async function quarantineTab() {
  const status = select(["open", "retried", "resolved", "all"].map((s) => ({ value: s, label: tx(`data.q.${s}`, s) })));
  const detail = h("div", { id: "quarantine-detail" });
  const holder = h("div", {});
  const show = () => {
    const list = paged("/quarantine", { status: status.value }, {
      columns: ["received_at", "kind", "reason_code", "field", "reason", "status", "source_file", "line_no"],
      onRow: (row) => into(detail, async () => {
        const record = await get(`/quarantine/${encodeURIComponent(row.quarantine_id)}`);
        return card(t("data.record"), h("p", {}, record.reason), h("pre", {}, JSON.stringify(record.payload, null, 2)),
          sqlBlock(record.sql));
      }) });
    clear(holder, list.box);
  };
  status.addEventListener("change", show);
  show();
  const outcome = h("div", { id: "quarantine-retry-status" });
  const retry = async () => {
    try {
      const job = await post("/quarantine/retry", {});
      clear(outcome, jobOutcome(await waitJob(job, jobStatus(outcome))));
      show();
    } catch (error) {
      clear(outcome, errorBox(error));
    }
  };
  return [h("div", { class: "form-row" }, field(t("data.status"), status),
    button(t("data.retry"), retry, { id: "quarantine-retry" })), outcome, holder, detail];
}

async function qualityTab() {
  const checks = await get("/inventory/checks", { limit: 50 });
  const counts = {};
  checks.summary.forEach((row) => {
    counts[row.check] = { ...counts[row.check], [row.severity]: row.findings };
  });
  const names = Object.keys(counts);
  const severities = [...new Set(checks.summary.map((r) => r.severity))];
  return [
    h("p", { class: "muted" }, t("data.checks_total", { total: checks.total, listed: checks.items.length })),
    chartBox({ legend: { top: 0 }, tooltip: { trigger: "axis" }, xAxis: { type: "category", data: names.map((n) => tx(`data.check.${n}`, n)) },
      yAxis: { type: "value" }, series: severities.map((s) => ({ name: tx(`data.severity.${s}`, s), type: "bar", stack: "all",
        data: names.map((n) => counts[n][s] || 0) })) }),
    table(checks.columns, checks.items.slice(0, 50), { cells: { check: (c) => tx(`data.check.${c}`, c),
      severity: (s) => tx(`data.severity.${s}`, s) } }),
    sqlBlock(checks.sql),
    h("h3", {}, t("data.stockouts")), paged("/inventory/stockouts", {}).box,
    h("h3", {}, t("data.reconciliation")), paged("/inventory/reconciliation", {}).box,
  ];
}

async function pipelineTab() {
  const stages = await get("/pipeline/stages");
  const progress = h("div", { id: "pipeline-progress" });
  const jobs = paged("/jobs", {}, { columns: ["kind", "status", "progress", "step", "created_by", "created_at", "finished_at"],
    cells: { progress: (v) => pct(v, 0), status: (s) => tx(`job.${s}`, s) } });
  const run = async () => {
    try {
      const job = await post("/pipeline/runs", {});
      clear(progress, jobOutcome(await waitJob(job, jobStatus(progress), 3600)));
      jobs.reload();
    } catch (error) {
      clear(progress, errorBox(error));
    }
  };
  return [h("ol", { class: "stages" }, stages.map((s) => h("li", {}, pick(s, "title"), " ", h("code", {}, s.name)))),
    button(t("data.run_pipeline"), run, { class: "primary", id: "pipeline-run" }), progress, h("h3", {}, t("data.jobs")), jobs.box];
}

const VIEWS = { sources: sourcesTab, imports: importsTab, quarantine: quarantineTab, quality: qualityTab, pipeline: pipelineTab };

export default async function data(page, args) {
  const tab = TABS.includes(args[0]) ? args[0] : (can("admin") ? "sources" : "quality");
  const body = h("div", { id: `data-${tab}` });
  clear(page, h("h1", {}, t("nav.data")),
    h("nav", { class: "tabs" }, TABS.map((key) => h("a", { href: `#data/${key}`, class: key === tab ? "active" : null },
      t(`data.tab.${key}`), ADMIN_TABS.has(key) && !can("admin") ? " 🔒" : ""))),
    card(t(`data.tab.${tab}`), h("p", { class: "muted" }, t(`data.about.${tab}`)), body));
  if (ADMIN_TABS.has(tab) && !can("admin")) {
    clear(body, h("p", { class: "muted denied" }, t("role.needs.admin")));
    return;
  }
  await into(body, VIEWS[tab]);
}
