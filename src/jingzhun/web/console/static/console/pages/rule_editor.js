// The no-code rule editor: a tree of and/or/not groups whose leaves are conditions on traits,
// tags, scores, events, orders, consent, identifiers or other audiences — edited as the rule
// language's own JSON (docs/tags.md), so what the editor shows is what the server compiles.
import { button, h, option, pick, select, t, tx } from "../core.js";

const KINDS = ["trait", "tag", "score", "event", "order", "consent", "has_identifier", "segment", "json"];
const WINDOW_UNITS = ["d", "w", "h"];
const COMPARISONS = [">=", ">", "=", "<=", "<"];

/** The kind of a rule node: "all", "any", "not" or a leaf kind. */
export function kindOf(node) {
  const keys = Object.keys(node || {});
  for (const kind of ["all", "any", "not", "trait", "tag", "score", "event", "order", "consent", "has_identifier",
    "segment"]) {
    if (keys.includes(kind)) {
      return kind;
    }
  }
  return "json";
}

/** A new leaf with sensible defaults from the catalogue, so a fresh condition is already valid. */
export function newLeaf(kind, catalog) {
  const values = catalog.values;
  const first = (list, key, fallback) => (list && list.length ? list[0][key] : fallback);
  switch (kind) {
    case "trait": {
      const gender = catalog.traits.find((x) => x.name === "gender");
      return gender ? { trait: "gender", op: "=", value: "F" } : { trait: catalog.traits[0].name, op: "is_not_null" };
    }
    case "tag": return { tag: catalog.tags[0].tag_id };
    case "score": return { score: catalog.score_models[0], of: "percentile", op: ">=", value: 0.8 };
    case "event": return { event: { name: [first(values.events, "event", "Product Viewed")], window: { last: "30d" } } };
    case "order": return { order: { window: { last: "365d" } } };
    case "consent": return { consent: { purpose: first(values.consents, "purpose", "marketing") } };
    case "has_identifier": return { has_identifier: ["phone"] };
    case "segment": return { segment: catalog.audiences.length ? catalog.audiences[0].segment_id : "" };
    default: return { trait: "gender", op: "is_not_null" };
  }
}

function parseValue(text, kind) {
  const trimmed = String(text).trim();
  if ((kind === "integer" || kind === "number") && trimmed !== "" && !Number.isNaN(Number(trimmed))) {
    return Number(trimmed);
  }
  if (kind === "boolean") {
    return trimmed === "true";
  }
  return trimmed;
}

function input(value, onInput, props = {}) {
  return h("input", { type: "text", value: value ?? "", ...props, oninput: (e) => onInput(e.target.value) });
}

/** The editor. `changed()` is called after every edit (the page previews the size then). */
export class RuleEditor {
  constructor(catalog, rule, changed) {
    this.catalog = catalog;
    this.root = rule && kindOf(rule) === "all" ? rule : { all: rule ? [rule] : [newLeaf("trait", catalog)] };
    this.changed = changed;
    this.box = h("div", { class: "rule-editor", id: "rule-editor" });
    this.draw();
  }

  rule() {
    return this.root;
  }

  draw() {
    this.box.replaceChildren(this.group(this.root, null));
  }

  edited(structure) {
    if (structure) {
      this.draw();
    }
    this.changed(this.root);
  }

  /** A group: all/any of its children, optionally negated ({not: {all: …}}). */
  group(node, remove, negate, toggleNot) {
    const kind = kindOf(node);
    const children = node[kind];
    const joiner = select([{ value: "all", label: t("builder.all"), selected: kind === "all" },
      { value: "any", label: t("builder.any"), selected: kind === "any" }], {
      class: "joiner", onchange: (e) => {
        const list = node[kind];
        delete node[kind];
        node[e.target.value] = list;
        this.edited(true);
      } });
    const adder = select([option("", t("builder.add")), ...KINDS.map((k) => option(k, t(`builder.kind.${k}`))),
      option("group", t("builder.kind.group"))], { class: "adder", "aria-label": t("builder.add"),
      onchange: (e) => {
        const chosen = e.target.value;
        if (chosen) {
          children.push(chosen === "group" ? { any: [newLeaf("tag", this.catalog)] } : newLeaf(chosen, this.catalog));
          this.edited(true);
        }
      } });
    return h("div", { class: `rule-group${negate ? " negated" : ""}` },
      h("div", { class: "group-head" }, toggleNot ? h("label", { class: "not-toggle" }, h("input", {
        type: "checkbox", checked: negate ? true : undefined, onchange: toggleNot }), t("builder.not")) : null, joiner,
        h("span", { class: "muted" }, t("builder.of_these")), adder,
        remove ? button("×", remove, { class: "remove", title: t("builder.remove") }) : null),
      h("div", { class: "group-body" }, children.map((child, index) => this.node(child, () => {
        children.splice(index, 1);
        this.edited(true);
      }, (replacement) => {
        children[index] = replacement;
        this.edited(true);
      }))));
  }

  /** Any node: a group, a negated node, or a leaf (with a "not" toggle). */
  node(node, remove, replace) {
    const kind = kindOf(node);
    if (kind === "all" || kind === "any") {
      return this.group(node, remove, false, () => replace({ not: node }));
    }
    if (kind === "not") {
      const inner = node.not;
      if (["all", "any"].includes(kindOf(inner))) {
        return this.group(inner, remove, true, () => replace(inner));
      }
      return this.leaf(inner, remove, () => replace(inner), true);
    }
    return this.leaf(node, remove, () => replace({ not: node }), false);
  }

  leaf(node, remove, toggleNot, negated) {
    const kind = kindOf(node);
    const not = h("label", { class: "not-toggle" }, h("input", { type: "checkbox", checked: negated ? true : undefined,
      onchange: toggleNot }), t("builder.not"));
    return h("div", { class: `rule-leaf kind-${kind}${negated ? " negated" : ""}`, dataset: { kind } },
      h("span", { class: "leaf-kind" }, t(`builder.kind.${kind}`)), not, ...this.fields(kind, node),
      button("×", remove, { class: "remove", title: t("builder.remove") }));
  }

  fields(kind, node) {
    switch (kind) {
      case "trait": return this.traitFields(node);
      case "tag": return this.tagFields(node);
      case "score": return this.scoreFields(node);
      case "event": return this.eventFields(node.event);
      case "order": return this.orderFields(node.order);
      case "consent": return this.consentFields(node.consent);
      case "has_identifier": return [select(this.catalog.identifier_types.map((id) => ({ value: id,
        label: tx(`identifier.${id}`, id), selected: node.has_identifier.includes(id) })), {
        onchange: (e) => { node.has_identifier = [e.target.value]; this.edited(false); } })];
      case "segment": return [select(this.catalog.audiences.map((a) => ({ value: a.segment_id, label: pick(a),
        selected: a.segment_id === node.segment })), {
        onchange: (e) => { node.segment = e.target.value; this.edited(false); } })];
      default: return [this.jsonField(node)];
    }
  }

  traitFields(node) {
    const trait = this.catalog.traits.find((x) => x.name === node.trait) || this.catalog.traits[0];
    const traitSelect = select(this.catalog.traits.map((x) => ({ value: x.name, label: tx(`trait.${x.name}`, x.name),
      selected: x.name === trait.name })), { class: "trait-name", onchange: (e) => {
      node.trait = e.target.value;
      const next = this.catalog.traits.find((x) => x.name === node.trait);
      if (!next.ops.includes(node.op)) {
        node.op = next.ops[0];
      }
      this.edited(true);
    } });
    const opSelect = select(trait.ops.map((op) => ({ value: op, label: tx(`op.${op}`, op), selected: op === node.op })), {
      class: "op", onchange: (e) => { node.op = e.target.value; this.defaultValue(node, trait); this.edited(true); } });
    return [traitSelect, opSelect, ...this.valueFields(node, trait.kind)];
  }

  defaultValue(node, trait) {
    if (node.op === "is_null" || node.op === "is_not_null") {
      delete node.value;
    } else if (node.op === "between" && !Array.isArray(node.value)) {
      node.value = ["", ""];
    } else if ((node.op === "in" || node.op === "not_in") && !Array.isArray(node.value)) {
      node.value = node.value === undefined ? [] : [node.value];
    } else if (Array.isArray(node.value) && !["between", "in", "not_in"].includes(node.op)) {
      node.value = node.value[0] ?? "";
    } else if (node.op === "within" || node.op === "older_than") {
      node.value = "30d";
    } else if (node.value === undefined) {
      node.value = trait.kind === "boolean" ? true : "";
    }
  }

  valueFields(node, kind) {
    const set = (value) => { node.value = value; this.edited(false); };
    if (node.op === "is_null" || node.op === "is_not_null") {
      return [];
    }
    if (node.op === "between") {
      const pair = Array.isArray(node.value) ? node.value : ["", ""];
      return [input(pair[0], (v) => set([parseValue(v, kind), pair[1]]), { class: "value short" }),
        h("span", {}, "–"), input(pair[1], (v) => set([pair[0], parseValue(v, kind)]), { class: "value short" })];
    }
    if (node.op === "in" || node.op === "not_in") {
      const list = Array.isArray(node.value) ? node.value.join(", ") : "";
      return [input(list, (v) => set(v.split(/[,，]/).map((x) => x.trim()).filter(Boolean).map((x) => parseValue(x, kind))),
        { class: "value", placeholder: t("builder.comma_list") })];
    }
    if (kind === "boolean") {
      return [select([{ value: "true", label: t("common.yes"), selected: node.value === true },
        { value: "false", label: t("common.no"), selected: node.value === false }],
      { onchange: (e) => set(e.target.value === "true") })];
    }
    return [input(node.value, (v) => set(node.op === "within" || node.op === "older_than" ? v : parseValue(v, kind)),
      { class: "value", placeholder: node.op === "within" || node.op === "older_than" ? "30d" : "" })];
  }

  tagFields(node) {
    const tagSelect = select(this.catalog.tags.map((tag) => ({ value: tag.tag_id, label: pick(tag),
      selected: tag.tag_id === node.tag })), { class: "tag-name", onchange: (e) => {
      node.tag = e.target.value;
      delete node.value;
      this.edited(false);
    } });
    const value = input(Array.isArray(node.value) ? node.value.join(", ") : node.value, (v) => {
      const list = v.split(/[,，]/).map((x) => x.trim()).filter(Boolean);
      if (list.length) {
        node.value = list;
      } else {
        delete node.value;
      }
      this.edited(false);
    }, { class: "value", placeholder: t("builder.tag_value") });
    return [tagSelect, value];
  }

  scoreFields(node) {
    return [
      select(this.catalog.score_models.map((m) => ({ value: m, label: tx(`score.${m}`, m), selected: m === node.score })),
        { onchange: (e) => { node.score = e.target.value; this.edited(false); } }),
      select([{ value: "percentile", label: t("builder.percentile"), selected: node.of === "percentile" },
        { value: "score", label: t("builder.score_value"), selected: node.of !== "percentile" }],
      { onchange: (e) => { node.of = e.target.value; this.edited(false); } }),
      select(COMPARISONS.map((op) => ({ value: op, label: tx(`op.${op}`, op), selected: op === node.op })),
        { onchange: (e) => { node.op = e.target.value; this.edited(false); } }),
      input(node.value, (v) => { node.value = parseValue(v, "number"); this.edited(false); }, { class: "value short" }),
    ];
  }

  windowFields(spec) {
    const last = (spec.window && spec.window.last) || "";
    const match = /^(\d+)\s*([hdw])$/.exec(last) || [null, "", "d"];
    const update = (amount, unit) => {
      if (amount) {
        spec.window = { last: `${amount}${unit}` };
      } else {
        delete spec.window;
      }
      this.edited(false);
    };
    const amount = input(match[1], (v) => update(v.trim(), unitSelect.value), { class: "value short", inputmode: "numeric",
      placeholder: t("builder.any_time") });
    const unitSelect = select(WINDOW_UNITS.map((u) => ({ value: u, label: t(`builder.unit.${u}`), selected: u === match[2] })),
      { onchange: () => update(amount.value.trim(), unitSelect.value) });
    return [h("span", { class: "muted" }, t("builder.in_last")), amount, unitSelect];
  }

  measureFields(spec, measures) {
    const current = measures.find((m) => spec[m]) || "count";
    const threshold = spec[current] || { op: ">=", value: 1 };
    const write = (measure, op, value) => {
      measures.forEach((m) => delete spec[m]);
      spec[measure] = measure === "sum" ? { field: "net_amount", op, value } : { op, value };
      this.edited(false);
    };
    const which = select(measures.map((m) => ({ value: m, label: t(`builder.measure.${m}`), selected: m === current })),
      { onchange: () => write(which.value, op.value, parseValue(amount.value, "number")) });
    const op = select(COMPARISONS.map((o) => ({ value: o, label: tx(`op.${o}`, o), selected: o === threshold.op })),
      { onchange: () => write(which.value, op.value, parseValue(amount.value, "number")) });
    const amount = input(threshold.value, (v) => write(which.value, op.value, parseValue(v, "number")),
      { class: "value short" });
    return [which, op, amount];
  }

  choice(list, key, current, onPick, anyLabel) {
    return select([option("", anyLabel), ...list.map((row) => ({ value: row[key], label: tx(`value.${row[key]}`, row[key]),
      selected: row[key] === current }))], { onchange: (e) => onPick(e.target.value || null) });
  }

  eventFields(spec) {
    const values = this.catalog.values;
    const name = Array.isArray(spec.name) ? spec.name[0] : spec.name;
    return [
      this.choice(values.events, "event", name, (v) => {
        if (v) { spec.name = [v]; } else { delete spec.name; }
        this.edited(false);
      }, t("builder.any_event")),
      ...this.windowFields(spec),
      ...this.measureFields(spec, ["count", "distinct_days"]),
    ];
  }

  orderFields(spec) {
    const values = this.catalog.values;
    const product = spec.product || {};
    return [
      this.choice(values.categories, "category", product.category, (v) => {
        if (v) { spec.product = { category: v }; } else { delete spec.product; }
        this.edited(false);
      }, t("builder.any_category")),
      this.choice(values.platforms, "platform", spec.platform, (v) => {
        if (v) { spec.platform = v; } else { delete spec.platform; }
        this.edited(false);
      }, t("builder.any_platform")),
      ...this.windowFields(spec),
      ...this.measureFields(spec, ["count", "sum", "quantity", "distinct_days"]),
    ];
  }

  consentFields(spec) {
    const values = this.catalog.values;
    return [
      this.choice(values.consents, "purpose", spec.purpose, (v) => { spec.purpose = v || "marketing"; this.edited(false); },
        t("builder.purpose")),
      this.choice(values.consent_channels, "channel", spec.channel, (v) => {
        if (v) { spec.channel = v; } else { delete spec.channel; }
        this.edited(false);
      }, t("builder.any_channel")),
    ];
  }

  jsonField(node) {
    const area = h("textarea", { class: "json", rows: 3 });
    area.value = JSON.stringify(node);
    area.addEventListener("change", () => {
      try {
        const parsed = JSON.parse(area.value);
        Object.keys(node).forEach((k) => delete node[k]);
        Object.assign(node, parsed);
        area.classList.remove("invalid");
        this.edited(false);
      } catch {
        area.classList.add("invalid");
      }
    });
    return area;
  }
}
