"""The canonical tables every stage reads and writes (DESIGN.md, "Canonical data").

Types are spelled in DuckDB's SQL and rendered for Spark by sqlglot. Conventions:
timestamps are TIMESTAMPTZ holding UTC instants (shown in the workspace time zone);
money is DECIMAL(18, 2) beside a `currency` column; JSON documents (Segment
properties, context, traits, definitions, evidence) are VARCHAR holding JSON text,
which both engines query with `->>` / GET_JSON_OBJECT.
"""

from __future__ import annotations

from dataclasses import dataclass

from jingzhun.engine import Column

MONEY = "DECIMAL(18, 2)"


@dataclass(frozen=True)
class TableDef:
    """A canonical table: its name, purpose and columns."""

    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


def table(name: str, description: str, *columns: str) -> TableDef:
    """Declare a table from "name TYPE [NOT NULL] -- comment" lines."""
    parsed = []
    for line in columns:
        spec, _, comment = line.partition("--")
        words = spec.split()
        required = spec.upper().rstrip().endswith("NOT NULL")
        type_words = words[1:-2] if required else words[1:]
        parsed.append(Column(words[0], " ".join(type_words), not required, comment.strip()))
    return TableDef(name, description, tuple(parsed))


SCHEMA_MIGRATIONS = table(
    "schema_migrations", "Which schema migrations this workspace has applied.",
    "version INTEGER NOT NULL", "name VARCHAR NOT NULL", "applied_at TIMESTAMPTZ NOT NULL",
)

# ---- collect: what arrives from sources ------------------------------------------

EVENTS = table(
    "events", "The append-only behaviour log, shaped like the Segment spec.",
    "message_id VARCHAR NOT NULL -- idempotency key (Segment messageId)",
    "type VARCHAR NOT NULL -- track | identify | page | screen | group | alias",
    "event VARCHAR -- track event name, e.g. Order Completed",
    "name VARCHAR -- page or screen name",
    "user_id VARCHAR", "anonymous_id VARCHAR",
    "previous_id VARCHAR -- alias calls", "group_id VARCHAR -- group calls",
    "timestamp TIMESTAMPTZ NOT NULL -- event time, corrected for client clock skew",
    "original_timestamp TIMESTAMPTZ", "sent_at TIMESTAMPTZ",
    "received_at TIMESTAMPTZ NOT NULL",
    "source_id VARCHAR -- the source (write key) that sent it",
    "channel VARCHAR -- web | app | miniprogram | server",
    "properties VARCHAR -- JSON", "context VARCHAR -- JSON", "traits VARCHAR -- JSON",
    "loaded_at TIMESTAMPTZ",
)
ORDERS = table(
    "orders", "Online and offline orders, one row per order.",
    "order_id VARCHAR NOT NULL", "source_id VARCHAR",
    "channel VARCHAR -- online | offline",
    "platform VARCHAR -- web | app | miniprogram | tmall | jd | douyin_shop | pos",
    "store_id VARCHAR", "customer_ref VARCHAR -- the buyer identifier as the source gave it",
    "customer_ref_type VARCHAR -- phone | member_id | wechat_openid | ...",
    "placed_at TIMESTAMPTZ NOT NULL", "paid_at TIMESTAMPTZ",
    "status VARCHAR -- paid | shipped | completed | refunded | cancelled",
    "currency VARCHAR NOT NULL", f"gross_amount {MONEY}", f"discount_amount {MONEY}",
    f"net_amount {MONEY}", "coupon_code VARCHAR", "payment_method VARCHAR",
    "ship_province VARCHAR", "ship_city VARCHAR", "imported_at TIMESTAMPTZ",
)
ORDER_ITEMS = table(
    "order_items", "Order lines.",
    "order_id VARCHAR NOT NULL", "line_no INTEGER NOT NULL", "product_id VARCHAR",
    "sku VARCHAR", "barcode VARCHAR", "quantity INTEGER NOT NULL",
    f"unit_price {MONEY}", f"discount {MONEY}", f"amount {MONEY}", "currency VARCHAR",
)
PRODUCTS = table(
    "products", "The product catalogue.",
    "product_id VARCHAR NOT NULL", "sku VARCHAR", "barcode VARCHAR -- EAN-13",
    "name VARCHAR", "brand VARCHAR", "category VARCHAR", "subcategory VARCHAR",
    "product_line VARCHAR", f"price {MONEY}", f"cost {MONEY}", "currency VARCHAR",
    "launch_date DATE", "is_consumable BOOLEAN", "updated_at TIMESTAMPTZ",
)
STORES = table(
    "stores", "Offline stores.",
    "store_id VARCHAR NOT NULL", "name VARCHAR", "province VARCHAR", "city VARCHAR",
    "opened_on DATE", "closed_on DATE",
)
INVENTORY_MOVEMENTS = table(
    "inventory_movements", "The stock ledger: every movement in or out of a location.",
    "movement_id VARCHAR NOT NULL", "occurred_at TIMESTAMPTZ NOT NULL",
    "location_id VARCHAR NOT NULL -- warehouse or store_id", "barcode VARCHAR",
    "sku VARCHAR", "product_id VARCHAR",
    "movement_type VARCHAR NOT NULL -- in | out | adjust | transfer",
    "quantity INTEGER NOT NULL", "reason VARCHAR", "reference VARCHAR",
    "source_id VARCHAR", "imported_at TIMESTAMPTZ",
)
STOCK_COUNTS = table(
    "stock_counts", "Cycle counts: what was on the shelf against what the system said.",
    "location_id VARCHAR NOT NULL", "barcode VARCHAR", "product_id VARCHAR",
    "counted_at TIMESTAMPTZ NOT NULL", "counted_qty INTEGER", "system_qty INTEGER",
)
SURVEY_RESPONSES = table(
    "survey_responses", "Survey answers, the 'small data' (income, job, stated preferences).",
    "response_id VARCHAR NOT NULL", "survey_id VARCHAR", "respondent_ref VARCHAR",
    "respondent_ref_type VARCHAR", "submitted_at TIMESTAMPTZ", "answers VARCHAR -- JSON",
    "source_id VARCHAR", "imported_at TIMESTAMPTZ",
)
BENCHMARKS = table(
    "benchmarks", "Competitor and industry series for horizontal comparison.",
    "series VARCHAR NOT NULL -- e.g. industry_gmv_index, search_volume",
    "subject VARCHAR -- our brand, a competitor, the industry",
    "category VARCHAR", "day DATE NOT NULL", "value DOUBLE", "unit VARCHAR", "source_id VARCHAR",
)
SOURCE_RECORDS = table(
    "source_records", "Imported CRM, social and lead rows with the identifiers they carry.",
    "record_id VARCHAR NOT NULL", "source_id VARCHAR NOT NULL",
    "kind VARCHAR NOT NULL -- member | follow | interaction | livestream_view | lead",
    "occurred_at TIMESTAMPTZ", "identifiers VARCHAR -- JSON {id_type: value}",
    "attributes VARCHAR -- JSON", "imported_at TIMESTAMPTZ",
)
AD_SPEND = table(
    "ad_spend", "Advertising spend and platform-reported results by day, channel and campaign.",
    "day DATE NOT NULL", "channel VARCHAR NOT NULL", "campaign_id VARCHAR",
    "campaign_name VARCHAR", "currency VARCHAR NOT NULL", f"spend {MONEY}",
    "impressions BIGINT", "clicks BIGINT", "conversions BIGINT",
    f"conversion_value {MONEY}", "source_id VARCHAR",
)
MESSAGE_HISTORY = table(
    "message_history", "Past sends imported from a marketing-automation tool's message log, one row per "
    "recipient and campaign, holdout rows included (measure resolves recipients to persons).",
    "record_id VARCHAR NOT NULL -- campaign_id|recipient", "campaign_id VARCHAR NOT NULL", "campaign_name VARCHAR",
    "channel VARCHAR NOT NULL -- sms | wechat_template | app_push | email, as the tool names them",
    "recipient VARCHAR NOT NULL -- the channel's address: phone, official-account openid, member id, e-mail",
    "arm VARCHAR NOT NULL -- treatment | control (the tool's holdout)",
    "sent_at TIMESTAMPTZ -- NULL for the control arm", "delivered BOOLEAN", "opened_at TIMESTAMPTZ",
    "clicked_at TIMESTAMPTZ", "unsubscribed BOOLEAN",
    "converted_order_id VARCHAR -- the tool's own conversion attribution (7 days)",
    "source_id VARCHAR", "imported_at TIMESTAMPTZ",
)
SOURCES = table(
    "sources", "Where data comes from; collector write keys are stored hashed.",
    "source_id VARCHAR NOT NULL", "name VARCHAR NOT NULL",
    "kind VARCHAR NOT NULL -- web | app | miniprogram | server | file",
    "write_key_hash VARCHAR", "created_at TIMESTAMPTZ NOT NULL", "disabled_at TIMESTAMPTZ",
)
QUARANTINE = table(
    "quarantine", "Rejected records, kept with the reason so nothing is silently dropped.",
    "quarantine_id VARCHAR NOT NULL", "source_id VARCHAR", "kind VARCHAR",
    "received_at TIMESTAMPTZ NOT NULL", "reason_code VARCHAR NOT NULL", "reason VARCHAR",
    "field VARCHAR", "payload VARCHAR", "status VARCHAR -- open | retried | discarded",
    "retried_at TIMESTAMPTZ",
)

IMPORTS = table(
    "imports", "One row per file import run: what was read, loaded, set aside, and where it stopped.",
    "import_id VARCHAR NOT NULL", "kind VARCHAR NOT NULL -- pos_sales | crm_members | online_orders | ...",
    "source_id VARCHAR", "file_path VARCHAR NOT NULL", "file_sha256 VARCHAR NOT NULL",
    "mapping VARCHAR -- JSON: the mapping used", "encoding VARCHAR",
    "started_at TIMESTAMPTZ NOT NULL", "finished_at TIMESTAMPTZ",
    "status VARCHAR NOT NULL -- running | finished | failed",
    "rows_read BIGINT", "rows_loaded BIGINT", "rows_quarantined BIGINT", "rows_duplicate BIGINT",
    "resume_row BIGINT -- rows of the file fully handled; an interrupted import resumes here",
)

# ---- identify and portray ----------------------------------------------------------

IDENTITIES = table(
    "identities", "Every known identifier and the person it currently resolves to.",
    "id_type VARCHAR NOT NULL -- phone | email | member_id | wechat_openid | wechat_unionid | ...",
    "id_value VARCHAR NOT NULL -- normalized (phone in E.164), hashed per the PII policy",
    "person_id VARCHAR", "strength VARCHAR -- strong | weak",
    "first_seen TIMESTAMPTZ", "last_seen TIMESTAMPTZ", "source_id VARCHAR",
)
IDENTITY_LINKS = table(
    "identity_links", "Evidence that two identifiers belong to one person.",
    "link_id VARCHAR NOT NULL", "left_type VARCHAR NOT NULL", "left_value VARCHAR NOT NULL",
    "right_type VARCHAR NOT NULL", "right_value VARCHAR NOT NULL",
    "rule VARCHAR NOT NULL -- which rule made the link", "evidence VARCHAR -- JSON",
    "source_id VARCHAR", "observed_at TIMESTAMPTZ", "revoked_at TIMESTAMPTZ",
)
PERSONS = table(
    "persons", "One row per resolved customer (OneID) and its merge history.",
    "person_id VARCHAR NOT NULL", "status VARCHAR NOT NULL -- active | merged | deleted",
    "merged_into VARCHAR", "created_at TIMESTAMPTZ NOT NULL", "updated_at TIMESTAMPTZ",
)
TRAITS = table(
    "traits", "Portrait attributes per person, with validity for history.",
    "person_id VARCHAR NOT NULL", "trait VARCHAR NOT NULL", "value VARCHAR",
    "value_type VARCHAR -- string | number | date | boolean", "source VARCHAR",
    "valid_from TIMESTAMPTZ NOT NULL", "valid_to TIMESTAMPTZ",
)
TAG_DEFINITIONS = table(
    "tag_definitions", "Marketer-facing tags and the rules that compute them.",
    "tag_id VARCHAR NOT NULL", "version INTEGER NOT NULL", "name_zh VARCHAR", "name_en VARCHAR",
    "category VARCHAR -- base | marketing | intent | scenario | predictive",
    "definition VARCHAR -- JSON", "created_at TIMESTAMPTZ", "created_by VARCHAR",
)
TAGS = table(
    "tags", "Tags held by persons, with validity for history.",
    "person_id VARCHAR NOT NULL", "tag_id VARCHAR NOT NULL", "tag_version INTEGER",
    "value VARCHAR", "valid_from TIMESTAMPTZ NOT NULL", "valid_to TIMESTAMPTZ",
)
SCORES = table(
    "scores", "Predictive scores per person and model version.",
    "person_id VARCHAR NOT NULL", "model VARCHAR NOT NULL", "model_version VARCHAR",
    "score DOUBLE", "computed_at TIMESTAMPTZ NOT NULL",
)

RECORD_PERSONS = table(
    "record_persons", "Which person each collected record belongs to, rebuilt with the ID graph "
    "so a person's history follows merges and splits.",
    "record_kind VARCHAR NOT NULL -- event | order | source_record | survey_response",
    "record_id VARCHAR NOT NULL -- message_id | order_id | record_id | response_id",
    "person_id VARCHAR NOT NULL",
)
IDENTITY_CHANGES = table(
    "identity_changes", "Every merge, split and deletion of persons, with the rule and evidence.",
    "change_id VARCHAR NOT NULL", "occurred_at TIMESTAMPTZ NOT NULL",
    "kind VARCHAR NOT NULL -- merge | split | delete",
    "person_id VARCHAR NOT NULL -- the person that remains (merge) or was split or deleted",
    "other_person_ids VARCHAR -- JSON list: persons merged into it, or split from it",
    "rule VARCHAR -- the link rule that caused a merge, or operator_unmerge / erasure_request",
    "evidence VARCHAR -- JSON: the links (no personal data for deletions)",
    "actor VARCHAR -- pipeline | a user name",
)
IDENTITY_OVERRIDES = table(
    "identity_overrides", "Operator decisions the ID graph must respect: bind, unbind, unmerge.",
    "override_id VARCHAR NOT NULL", "kind VARCHAR NOT NULL -- bind | unbind | unmerge",
    "id_type VARCHAR NOT NULL", "id_value VARCHAR NOT NULL",
    "other_type VARCHAR", "other_value VARCHAR -- bind: the identifier to join; unbind: the one to part from",
    "reason VARCHAR", "created_at TIMESTAMPTZ NOT NULL", "created_by VARCHAR", "revoked_at TIMESTAMPTZ",
)
ERASED_IDENTIFIERS = table(
    "erased_identifiers", "Identifiers of persons deleted on request (PIPL/GDPR), kept only as "
    "salted hashes so a re-import cannot bring them back.",
    "id_type VARCHAR NOT NULL", "id_hash VARCHAR NOT NULL -- salted SHA-256 of the normalized value",
    "change_id VARCHAR NOT NULL -- the deletion in identity_changes", "erased_at TIMESTAMPTZ NOT NULL",
)
MATCH_CANDIDATES = table(
    "match_candidates", "Probabilistic matches between records that share no identifier, "
    "auto-merged above the threshold, queued for review below it.",
    "candidate_id VARCHAR NOT NULL", "left_type VARCHAR NOT NULL", "left_value VARCHAR NOT NULL",
    "right_type VARCHAR NOT NULL", "right_value VARCHAR NOT NULL",
    "match_probability DOUBLE NOT NULL", "match_weight DOUBLE",
    "status VARCHAR NOT NULL -- auto_merged | pending | accepted | rejected",
    "evidence VARCHAR -- JSON: per-field comparison levels", "model_version VARCHAR",
    "created_at TIMESTAMPTZ NOT NULL", "reviewed_by VARCHAR", "reviewed_at TIMESTAMPTZ",
)
MODEL_RUNS = table(
    "model_runs", "Each trained model version with its evaluation, so every score can be traced.",
    "model VARCHAR NOT NULL -- purchase_propensity | churn | clv | lookalike | recommend | ...",
    "model_version VARCHAR NOT NULL", "trained_at TIMESTAMPTZ NOT NULL",
    "train_until TIMESTAMPTZ -- the time split: features before, labels after",
    "metrics VARCHAR -- JSON: auc, calibration, precision@k, ...", "params VARCHAR -- JSON",
    "features VARCHAR -- JSON list", "rows_trained BIGINT",
)

IDENTITY_JUNK = table(
    "identity_junk", "Identifier values the ID graph refuses as evidence, with why: blocklisted test and "
    "placeholder values, and values shared by more persons than the identity config allows.",
    "id_type VARCHAR NOT NULL", "id_value VARCHAR NOT NULL",
    "reason VARCHAR NOT NULL -- blocklist | shared",
    "anchors BIGINT -- shared: the most distinct one-per-person identifiers seen with the value",
    "records BIGINT -- source records (orders, members, event streams) carrying the value",
    "events BIGINT -- observations of the value across those records",
)
IDENTITY_LIVE_BINDINGS = table(
    "identity_live_bindings", "Identifiers first seen after the last ID-graph build, bound in real time to "
    "the known person of the event that carried them (an identify call's new anonymous id); the next "
    "build supersedes them.",
    "id_type VARCHAR NOT NULL", "id_value VARCHAR NOT NULL -- normalized like identities.id_value",
    "person_id VARCHAR NOT NULL", "bound_at TIMESTAMPTZ NOT NULL",
    "message_id VARCHAR -- the event that bound it", "source_id VARCHAR",
)
PERSON_TRAITS = table(
    "person_traits", "The portrait: one row per active person, typed traits for tags, scores and audiences.",
    "person_id VARCHAR NOT NULL",
    "name VARCHAR", "gender VARCHAR -- M | F", "birth_date DATE",
    "age INTEGER -- whole years at as_of", "age_band VARCHAR -- <25 | 25-29 | 30-34 | 35-39 | 40-49 | 50+",
    "province VARCHAR", "city VARCHAR", "member_id VARCHAR", "member_level VARCHAR",
    "member_since TIMESTAMPTZ -- earliest CRM registration", "register_store VARCHAR",
    "income_band VARCHAR -- survey", "job VARCHAR -- survey",
    "price_sensitivity INTEGER -- survey, 1 (not sensitive) - 5",
    "first_seen_at TIMESTAMPTZ", "last_seen_at TIMESTAMPTZ",
    "active_days_30d INTEGER", "active_days_90d INTEGER",
    "sessions_90d INTEGER -- 30 minutes without an event starts a new session",
    "page_views_90d INTEGER", "product_views_90d INTEGER", "cart_adds_90d INTEGER",
    "events_total BIGINT",
    "favourite_category VARCHAR", "preferred_channel VARCHAR -- web | app | miniprogram | tmall | jd | douyin_shop | pos",
    "preferred_store_id VARCHAR", "device_type VARCHAR -- ios | android | pc | other",
    "price_band VARCHAR -- low | mid | high, against the category's catalogue prices",
    "orders_total INTEGER -- kept orders (not cancelled, not refunded)", "orders_365d INTEGER",
    f"gmv_total {MONEY}", f"gmv_365d {MONEY}", f"aov {MONEY}",
    "refund_rate DOUBLE", "first_order_at TIMESTAMPTZ", "last_order_at TIMESTAMPTZ",
    "days_since_last_order INTEGER",
    "online_order_share DOUBLE", "offline_order_share DOUBLE", "coupon_order_share DOUBLE",
    "holiday_order_share DOUBLE -- public holidays and promotion peaks (618, 双11, 女王节)",
    "livestream_views_90d INTEGER", "social_interactions_90d INTEGER", "follows_official_account BOOLEAN",
    "rfm_r INTEGER -- 1-5", "rfm_f INTEGER -- 1-5", "rfm_m INTEGER -- 1-5",
    "rfm_class VARCHAR -- important_value | important_develop | important_keep | important_retain | general_*",
    "has_phone BOOLEAN", "has_email BOOLEAN", "has_wechat BOOLEAN",
    "as_of TIMESTAMPTZ -- the instant the traits describe",
    "computed_at TIMESTAMPTZ -- when they were computed",
)

# ---- segment, activate, measure ------------------------------------------------------

SEGMENTS = table(
    "segments", "Audience definitions, versioned.",
    "segment_id VARCHAR NOT NULL", "version INTEGER NOT NULL", "name VARCHAR",
    "definition VARCHAR -- JSON rule tree", "created_at TIMESTAMPTZ", "created_by VARCHAR",
)
SEGMENT_MEMBERS = table(
    "segment_members", "Dated membership snapshots of audiences.",
    "segment_id VARCHAR NOT NULL", "person_id VARCHAR NOT NULL",
    "snapshot_date DATE NOT NULL", "entered_at TIMESTAMPTZ",
)
SEGMENT_LIVE_MEMBERS = table(
    "segment_live_members", "Real-time audiences: every entry and exit as events arrive, newest last; "
    "a person's latest row for an audience says whether they are in it now.",
    "segment_id VARCHAR NOT NULL", "segment_version INTEGER", "person_id VARCHAR NOT NULL",
    "change VARCHAR NOT NULL -- entered | exited",
    "changed_at TIMESTAMPTZ NOT NULL -- when the change was recorded",
    "trigger_message_id VARCHAR -- the person's latest event in the batch that caused it; NULL: a re-check "
    "found the window had passed",
    "event_at TIMESTAMPTZ -- that event's time", "received_at TIMESTAMPTZ -- when the collector received it",
)
CAMPAIGNS = table(
    "campaigns", "Campaigns and journeys: audience x content x channel x schedule.",
    "campaign_id VARCHAR NOT NULL", "name VARCHAR", "kind VARCHAR -- once | recurring | triggered | journey",
    "segment_id VARCHAR", "channel VARCHAR", "definition VARCHAR -- JSON",
    "holdout_ratio DOUBLE", "status VARCHAR", "created_at TIMESTAMPTZ", "created_by VARCHAR",
)
DELIVERIES = table(
    "deliveries", "Every message scheduled or sent to a person.",
    "delivery_id VARCHAR NOT NULL", "campaign_id VARCHAR", "person_id VARCHAR NOT NULL",
    "channel VARCHAR NOT NULL", "step VARCHAR", "variant VARCHAR", "coupon_code VARCHAR",
    "scheduled_at TIMESTAMPTZ", "sent_at TIMESTAMPTZ", "status VARCHAR", "content_hash VARCHAR",
)
MESSAGE_EVENTS = table(
    "message_events", "What happened to a delivery: delivered, opened, clicked, converted ...",
    "message_event_id VARCHAR NOT NULL", "delivery_id VARCHAR", "campaign_id VARCHAR",
    "person_id VARCHAR", "event_type VARCHAR NOT NULL", "occurred_at TIMESTAMPTZ NOT NULL",
    "properties VARCHAR -- JSON",
)
EXPERIMENTS = table(
    "experiments", "Arm assignment for holdouts and A/B tests.",
    "experiment_id VARCHAR NOT NULL", "campaign_id VARCHAR", "person_id VARCHAR NOT NULL",
    "arm VARCHAR NOT NULL -- control | treatment | variant name", "assigned_at TIMESTAMPTZ",
)
CAMPAIGN_RUNS = table(
    "campaign_runs", "Each run of a campaign (one per scheduled occurrence): when it was planned, how it ended.",
    "campaign_id VARCHAR NOT NULL", "run_id VARCHAR NOT NULL -- once | the local date of a recurring occurrence",
    "version INTEGER -- the campaign version the run used", "scheduled_for TIMESTAMPTZ",
    "status VARCHAR NOT NULL -- planned | sending | done | paused", "planned_at TIMESTAMPTZ",
    "finished_at TIMESTAMPTZ", "counts VARCHAR -- JSON: deliveries by status", "actor VARCHAR",
)
SEND_LOCKS = table(
    "send_locks", "One row per lock; planning a send updates it first, so two plans never interleave.",
    "lock_id VARCHAR NOT NULL", "counter BIGINT NOT NULL", "taken_at TIMESTAMPTZ", "holder VARCHAR",
)
JOURNEYS = table(
    "journeys", "Multi-step journeys: one row per definition version (activation/journeys.py).",
    "journey_id VARCHAR NOT NULL", "version INTEGER NOT NULL", "name VARCHAR",
    "entry_kind VARCHAR -- event | segment_entered | segment", "definition VARCHAR -- JSON",
    "status VARCHAR -- active | paused", "created_at TIMESTAMPTZ", "created_by VARCHAR", "updated_at TIMESTAMPTZ",
)
JOURNEY_STATES = table(
    "journey_states", "Where each person is in each journey: one row per person and entry, advanced in batches.",
    "journey_id VARCHAR NOT NULL", "version INTEGER NOT NULL -- the version the person entered (and finishes)",
    "person_id VARCHAR NOT NULL", "entry INTEGER NOT NULL -- 1 for the first entry, 2 after a re-entry",
    "step VARCHAR NOT NULL -- the step the person is at (or ended at)",
    "entered_at TIMESTAMPTZ NOT NULL -- journey time of the entry (the entry event's time)",
    "step_entered_at TIMESTAMPTZ NOT NULL -- journey time the person reached the step",
    "wake_at TIMESTAMPTZ -- a waiting step's deadline (delay end, wait_for timeout)",
    "status VARCHAR NOT NULL -- active | waiting | done | exited | held_out",
    "reason VARCHAR -- how it ended: exit, end, goal", "updated_at TIMESTAMPTZ",
)
JOURNEY_TRANSITIONS = table(
    "journey_transitions", "Every move of a person through a journey, in journey time: the path of each person.",
    "journey_id VARCHAR NOT NULL", "version INTEGER NOT NULL", "person_id VARCHAR NOT NULL",
    "entry INTEGER NOT NULL", "from_step VARCHAR -- NULL on entry", "to_step VARCHAR NOT NULL",
    "outcome VARCHAR NOT NULL -- entered | held_out | event | timeout | delay | branch | message | exit | end | goal",
    "at TIMESTAMPTZ NOT NULL -- journey time of the move", "recorded_at TIMESTAMPTZ NOT NULL",
)
COUPONS = table(
    "coupons", "Personal coupon codes: one per person and campaign, unguessable (HMAC of the workspace "
    "salt), with the validity window redemptions are matched in.",
    "code VARCHAR NOT NULL -- 10 characters of 23456789ABCDEFGHJKLMNPQRSTUVWXYZ, unique",
    "campaign_id VARCHAR NOT NULL", "person_id VARCHAR NOT NULL",
    "name_zh VARCHAR", "name_en VARCHAR -- e.g. 满199减30 / ¥30 off orders over ¥199",
    "discount_type VARCHAR NOT NULL -- amount | percent", f"discount_value {MONEY} -- CNY off, or percent off",
    f"min_spend {MONEY}", "currency VARCHAR",
    "valid_from TIMESTAMPTZ NOT NULL", "valid_to TIMESTAMPTZ NOT NULL -- exclusive end",
    "issued_at TIMESTAMPTZ NOT NULL", "attempt INTEGER -- 0, or the re-hash that avoided a clash",
    "definition VARCHAR -- JSON: the coupon definition it was issued from",
)
RECOMMENDATIONS = table(
    "recommendations", "Every person's current recommendation lists, served as they are: 猜你喜欢, 热门推荐, "
    "新品上市, each row with why (zh/en) and the model version whose evaluation is in model_runs.",
    "person_id VARCHAR NOT NULL", "rank INTEGER NOT NULL -- 1 = first, within person and kind",
    "product_id VARCHAR NOT NULL", "score DOUBLE",
    "kind VARCHAR NOT NULL -- guess_you_like | popular | new_arrival",
    "reason_zh VARCHAR", "reason_en VARCHAR",
    "source_product_id VARCHAR -- guess_you_like: the person's item that led to it",
    "model_version VARCHAR NOT NULL -- model_runs (model recommend)", "computed_at TIMESTAMPTZ NOT NULL",
)
RELATED_PRODUCTS = table(
    "related_products", "For each product, the products to show beside it (product pages, carts).",
    "product_id VARCHAR NOT NULL", "rank INTEGER NOT NULL", "related_product_id VARCHAR NOT NULL",
    "score DOUBLE -- asymmetric cosine of who bought, carted and viewed them, shrunk by support (0: shelf fill)",
    "support BIGINT -- persons who interacted with both", "co_purchases BIGINT -- persons who bought both",
    "lift DOUBLE -- support x persons / (persons of one x persons of the other)",
    "basis VARCHAR -- also_bought | also_viewed | same_category (shelf fill)",
    "reason_zh VARCHAR", "reason_en VARCHAR",
    "model_version VARCHAR NOT NULL", "computed_at TIMESTAMPTZ NOT NULL",
)
DECISIONS = table(
    "decisions", "The decision API's log: one row per decision (who, where, what was offered, how fast), appended "
    "in batches, so impression caps survive a restart and measure can attribute outcomes to offers.",
    "decision_id VARCHAR NOT NULL", "decided_at TIMESTAMPTZ NOT NULL",
    "day DATE NOT NULL -- the workspace-local day the impression cap counts in",
    "placement VARCHAR NOT NULL -- home_banner | product_page | cart | push | …",
    "person_id VARCHAR -- NULL for an unknown visitor", "id_type VARCHAR -- the identifier type given (never the value)",
    "outcome VARCHAR NOT NULL -- personal | fallback | no_consent | suppressed | unreachable | frequency_cap | "
    "quiet_hours | impression_cap | no_coupon | empty",
    "product_ids VARCHAR -- JSON array of the offered products, in rank order",
    "kinds VARCHAR -- JSON array: the list each offer came from (guess_you_like, related, popular …)",
    "context_product_ids VARCHAR -- JSON array: the product page's product or the cart",
    "coupon_code VARCHAR", "model_version VARCHAR -- the recommender's (model_runs)",
    "snapshot_version VARCHAR -- the in-memory snapshot that answered", "latency_us INTEGER -- time spent deciding",
)
LEADS = table(
    "leads", "Sales leads (销售线索) as last scored: intent, freshness, fit, the calibrated chance to convert, "
    "and the status the scoring saw (imported outcome or a rep's).",
    "lead_id VARCHAR NOT NULL", "record_id VARCHAR -- source_records (kind lead)",
    "person_id VARCHAR -- the customer holding the lead's phone, if any", "contact_name VARCHAR", "company VARCHAR",
    "city VARCHAR", "territory VARCHAR -- definitions/sales.yaml", "source VARCHAR -- form | livestream | store_visit | ad_click",
    "created_at TIMESTAMPTZ NOT NULL", "last_activity_at TIMESTAMPTZ",
    "status VARCHAR NOT NULL -- open | won | lost, as of scored_at", "status_source VARCHAR -- import | rep",
    "days_since_activity DOUBLE", "freshness DOUBLE -- decay weight: 1 within the fresh days, then halving",
    "intent_tags VARCHAR -- JSON array", "no_answers INTEGER -- calls a rep recorded as no_answer",
    "score DOUBLE -- calibrated probability of converting", "freshness_part DOUBLE -- log-odds from freshness",
    "intent_part DOUBLE -- log-odds from intent", "fit_part DOUBLE -- log-odds from fit",
    "model_version VARCHAR", "scored_at TIMESTAMPTZ NOT NULL",
)
LEAD_ASSIGNMENTS = table(
    "lead_assignments", "Which rep works which lead: at most one open assignment per lead (taken under a lock "
    "and checked in the same transaction); closed by an outcome or a release.",
    "assignment_id VARCHAR NOT NULL -- lead_id:attempt, unique", "lead_id VARCHAR NOT NULL",
    "attempt INTEGER NOT NULL -- 1 for the first assignment of the lead", "rep_id VARCHAR NOT NULL",
    "territory VARCHAR", "period_start DATE NOT NULL -- the quota period (day or week) it counts in",
    "score DOUBLE -- the lead's score when assigned", "assigned_at TIMESTAMPTZ NOT NULL", "assigned_by VARCHAR",
    "closed_at TIMESTAMPTZ", "close_reason VARCHAR -- won | lost | no_answer | released",
)
LEAD_OUTCOMES = table(
    "lead_outcomes", "What reps recorded for their leads; the next scoring learns from won and lost.",
    "lead_id VARCHAR NOT NULL", "assignment_id VARCHAR", "rep_id VARCHAR",
    "outcome VARCHAR NOT NULL -- won | lost | no_answer", "note VARCHAR",
    "recorded_at TIMESTAMPTZ NOT NULL", "recorded_by VARCHAR",
)
HISTORY_DELIVERIES = table(
    "history_deliveries", "The imported message log (message_history) as deliveries: recipients resolved to "
    "persons through `identities`, rebuilt by the measure stage so KPIs and lift read live and past sends alike.",
    "delivery_id VARCHAR NOT NULL -- 'mh:' || MD5(campaign_id:recipient)", "campaign_id VARCHAR NOT NULL",
    "channel VARCHAR NOT NULL -- sms | wechat | app_push | email", "person_id VARCHAR -- NULL: not resolved",
    "unit_id VARCHAR NOT NULL -- the person, else the recipient (hashed): the unit lift counts",
    "arm VARCHAR NOT NULL -- treatment | control", "anchor_at TIMESTAMPTZ NOT NULL -- sent, or the campaign's "
    "first send for the control arm: where the conversion window starts",
    "sent_at TIMESTAMPTZ", "delivered BOOLEAN", "opened_at TIMESTAMPTZ", "clicked_at TIMESTAMPTZ",
    "unsubscribed BOOLEAN", "converted_order_id VARCHAR",
)
CAMPAIGN_KPIS = table(
    "campaign_kpis", "Campaign results per campaign, channel, audience, local send day and arm; kept current "
    "by the collector's after-load hook and rebuilt identically by the measure stage.",
    "campaign_id VARCHAR NOT NULL", "channel VARCHAR NOT NULL", "segment_id VARCHAR -- the campaign's audience",
    "day DATE NOT NULL -- local day the message went (or, for the control arm, was planned)",
    "arm VARCHAR NOT NULL -- treatment | control", "origin VARCHAR NOT NULL -- jingzhun | import",
    "audience BIGINT -- deliveries planned (treatment: every decision, control: held out)",
    "sent BIGINT", "delivered BIGINT", "failed BIGINT -- failed, or sent but not delivered",
    "opened BIGINT", "clicked BIGINT", "unsubscribed BIGINT",
    "converted BIGINT -- deliveries followed by an order within the attribution window",
    "orders BIGINT", f"gmv {MONEY}", "cost DECIMAL(18, 4)",
    "ctr DOUBLE -- clicked / delivered", "cvr DOUBLE -- converted / delivered (control: / audience)",
    "roi DOUBLE -- gmv / cost", "computed_at TIMESTAMPTZ",
)
CONVERSION_ORDERS = table(
    "conversion_orders", "Kept orders with their person, each once (imported, or tracked `Order Completed` "
    "events; the imported row wins): what campaign conversions are matched against. Rebuilt by the measure "
    "stage and extended by the collector's live-KPI hook, so a live update reads these rows instead of "
    "joining every order event to its person again.",
    "person_id VARCHAR NOT NULL", "order_id VARCHAR NOT NULL", "placed_at TIMESTAMPTZ",
    f"amount {MONEY} -- net of discounts; NULL when a tracked event carried none",
    "origin VARCHAR NOT NULL -- order (imported) | event (tracked Order Completed)",
)
ATTRIBUTION_CREDITS = table(
    "attribution_credits", "Conversions and order value credited to touches (campaign messages, ad clicks, "
    "organic visits) by each attribution model.",
    "model VARCHAR NOT NULL -- first | last | linear | time_decay | position | markov",
    "touch_channel VARCHAR NOT NULL -- e.g. message:sms, ad:xiaohongshu, organic:app",
    "touch_kind VARCHAR NOT NULL -- message | ad | organic", "campaign_id VARCHAR -- NULL for markov rows",
    "conversions DOUBLE", "value DOUBLE", "period_start DATE", "period_end DATE", "computed_at TIMESTAMPTZ",
)
CHANNEL_RESPONSES = table(
    "channel_responses", "How each person responded to messages per channel (the closed loop: tags, lead "
    "scores and send-time choices of the next run read it).",
    "person_id VARCHAR NOT NULL", "channel VARCHAR NOT NULL", "delivered BIGINT -- in the last 180 days",
    "opened BIGINT", "clicked BIGINT", "converted BIGINT", "unsubscribed BIGINT",
    "coupon_messages BIGINT -- delivered messages carrying a personal coupon",
    "coupon_redemptions BIGINT -- those coupons used on an order",
    "last_delivered_at TIMESTAMPTZ", "last_clicked_at TIMESTAMPTZ", "last_converted_at TIMESTAMPTZ",
    "as_of TIMESTAMPTZ", "computed_at TIMESTAMPTZ",
)
SEND_TIME_PREFERENCES = table(
    "send_time_preferences", "Each person's most responsive local hour per channel, for send-time optimization.",
    "person_id VARCHAR NOT NULL", "channel VARCHAR NOT NULL", "best_hour_local INTEGER NOT NULL -- 0-23",
    "evidence VARCHAR -- JSON: the person's sends and clicks, the smoothed rate, and whether it is the "
    "channel's hour (no history of their own)", "computed_at TIMESTAMPTZ",
)
ALERT_HISTORY = table(
    "alert_history", "Every KPI alert that fired: the value, what was expected, the drill-down, the notice.",
    "alert_id VARCHAR NOT NULL", "day DATE NOT NULL -- the day the KPI was judged on",
    "fired_at TIMESTAMPTZ NOT NULL", "kpi VARCHAR", "value DOUBLE", "expected DOUBLE",
    "score DOUBLE -- robust z, or the value for a threshold rule", "rule VARCHAR -- JSON",
    "message_zh VARCHAR", "message_en VARCHAR", "drill_down VARCHAR -- JSON rows of the root-cause drill-down",
    "notify_status VARCHAR -- sent | failed | none", "notify_error VARCHAR",
)

# ---- consent and governance ----------------------------------------------------------

CONSENTS = table(
    "consents", "Consent per person, purpose and channel (PIPL-style), with history.",
    "person_id VARCHAR NOT NULL", "purpose VARCHAR NOT NULL -- marketing | transactional | sensitive",
    "channel VARCHAR", "status VARCHAR NOT NULL -- granted | withdrawn",
    "recorded_at TIMESTAMPTZ NOT NULL", "source_id VARCHAR", "evidence VARCHAR",
)
SUPPRESSIONS = table(
    "suppressions", "Identifiers that must never be contacted on a channel.",
    "id_type VARCHAR NOT NULL", "id_value VARCHAR NOT NULL", "channel VARCHAR",
    "reason VARCHAR", "created_at TIMESTAMPTZ NOT NULL", "expires_at TIMESTAMPTZ",
)
AUDIT_LOG = table(
    "audit_log", "Every change made by a user or machine.",
    "audit_id VARCHAR NOT NULL", "occurred_at TIMESTAMPTZ NOT NULL", "actor VARCHAR NOT NULL",
    "action VARCHAR NOT NULL", "object_type VARCHAR", "object_id VARCHAR", "details VARCHAR -- JSON",
)
USERS = table(
    "users", "Console users and their roles.",
    "user_id VARCHAR NOT NULL", "username VARCHAR NOT NULL", "display_name VARCHAR",
    "role VARCHAR NOT NULL -- admin | marketer | analyst | viewer", "password_hash VARCHAR",
    "created_at TIMESTAMPTZ NOT NULL", "disabled_at TIMESTAMPTZ",
)
API_KEYS = table(
    "api_keys", "Machine credentials, stored hashed, scoped to a role.",
    "key_id VARCHAR NOT NULL", "name VARCHAR", "key_hash VARCHAR NOT NULL",
    "role VARCHAR NOT NULL", "created_at TIMESTAMPTZ NOT NULL", "revoked_at TIMESTAMPTZ",
    "last_used_at TIMESTAMPTZ",
)
WEB_SESSIONS = table(
    "web_sessions", "Console log-ins: one row per session, the token stored hashed (web/).",
    "session_hash VARCHAR NOT NULL -- SHA-256 of the random session token in the cookie",
    "user_id VARCHAR NOT NULL", "csrf_token VARCHAR NOT NULL -- sent back in X-CSRF-Token on changes",
    "created_at TIMESTAMPTZ NOT NULL", "expires_at TIMESTAMPTZ NOT NULL", "revoked_at TIMESTAMPTZ",
    "ip VARCHAR", "user_agent VARCHAR",
)
JOBS = table(
    "jobs", "Long work the server runs in the background (pipeline, campaign runs, imports), with its outcome.",
    "job_id VARCHAR NOT NULL", "kind VARCHAR NOT NULL -- pipeline | campaign_run | import | snapshot | quarantine_retry",
    "status VARCHAR NOT NULL -- running | succeeded | failed | interrupted", "params VARCHAR -- JSON",
    "progress DOUBLE -- 0..1 at the last state change", "step VARCHAR -- what it was doing",
    "result VARCHAR -- JSON", "error VARCHAR -- JSON: code, field, message (en/zh)",
    "created_by VARCHAR", "created_at TIMESTAMPTZ NOT NULL", "finished_at TIMESTAMPTZ",
)
