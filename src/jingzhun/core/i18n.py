"""User-facing text in Chinese (default) and English.

Messages are looked up by key so the CLI and console can switch language without
touching the code that produces the message. Chinese is the default because our
users are Chinese retail teams; `JINGZHUN_LANG=en` or the workspace `language`
switches.
"""

from __future__ import annotations

import os

SUPPORTED_LANGUAGES = ("zh", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "init.created": {
        "zh": "已创建工作区 {path}（时区 {timezone}，币种 {currency}，引擎 {engine}）",
        "en": "Created workspace {path} (time zone {timezone}, currency {currency}, engine {engine})",
    },
    "migrate.applied": {
        "zh": "数据表结构已从版本 {old} 升级到 {new}",
        "en": "Schema migrated from version {old} to {new}",
    },
    "migrate.current": {
        "zh": "数据表结构已是最新版本 {version}",
        "en": "Schema is already at the latest version {version}",
    },
    "pipeline.stage": {"zh": "阶段 {stage}", "en": "Stage {stage}"},
    "pipeline.done": {
        "zh": "流水线完成：{count} 个阶段，用时 {seconds:.1f} 秒",
        "en": "Pipeline finished: {count} stages in {seconds:.1f} s",
    },
    "demo.generating": {
        "zh": "正在生成演示数据：{persons} 位顾客，随机种子 {seed}",
        "en": "Generating demo data: {persons} persons, seed {seed}",
    },
    "demo.done": {
        "zh": "演示数据已写入 {path}（用时 {seconds:.1f} 秒）",
        "en": "Demo data written to {path} in {seconds:.1f} s",
    },
    "table.source": {"zh": "数据源", "en": "Source"},
    "table.file": {"zh": "文件", "en": "File"},
    "table.rows": {"zh": "行数", "en": "Rows"},
    "table.malformed": {"zh": "故意损坏的行", "en": "Malformed rows"},
    "table.table": {"zh": "数据表", "en": "Table"},
    "note.schema_version": {"zh": "表结构版本 {version}", "en": "schema version {version}"},
    "note.migration_applied": {"zh": "已应用迁移 {version}：{name}", "en": "applied migration {version}: {name}"},
    "table.stage": {"zh": "阶段", "en": "Stage"},
    "table.tables": {"zh": "数据表数", "en": "Tables"},
    "table.notes": {"zh": "说明", "en": "Notes"},
    "table.result": {"zh": "结果", "en": "Result"},
    "error.title": {"zh": "错误", "en": "Error"},
    "sql.rows": {"zh": "{count} 行", "en": "{count} rows"},
    # ---- identify and portray (pipeline notes) ----
    "note.matching_done": {
        "zh": "概率匹配：{members} 个会员，自动合并 {auto_merged} 对，待审核 {pending} 对（模型 {model_version}）",
        "en": "Matching: {members} members, {auto_merged} pairs merged, {pending} to review (model {model_version})",
    },
    "note.matching_too_few": {
        "zh": "会员数 {members} 少于 {needed}，跳过概率匹配",
        "en": "{members} members (fewer than {needed}): matching skipped",
    },
    "note.marketplace_done": {
        "zh": "平台买家关联：{buyers} 个买家，自动关联 {auto_merged} 对（会员或其他平台买家），"
              "待审核 {pending} 对（会员真实匹配率 {rate_city}）",
        "en": "Marketplace buyers: {buyers} buyers, {auto_merged} pairs linked (to members or across "
              "platforms), {pending} to review (members' true-fit rate {rate_city})",
    },
    "note.marketplace_disabled": {
        "zh": "平台买家关联已关闭（identity.yaml 的 marketplace.enabled）",
        "en": "marketplace buyer linking is off (marketplace.enabled in identity.yaml)",
    },
    "note.marketplace_no_data": {
        "zh": "没有会员或平台订单，跳过平台买家关联", "en": "no members or marketplace orders: buyer linking skipped",
    },
    "note.marketplace_no_phones": {
        "zh": "会员手机号以哈希存储，无法与掩码手机号比对，跳过平台买家关联",
        "en": "member phones are stored hashed and cannot be compared with masked phones: buyer linking skipped",
    },
    "note.identity_persons": {"zh": "{active} 位客户，{identifiers} 个标识", "en": "{active} persons, {identifiers} identifiers"},
    "note.identity_rounds": {"zh": "连通分量迭代 {rounds} 轮", "en": "connected components in {rounds} rounds"},
    "note.identity_changes": {"zh": "合并/拆分记录 {count} 条", "en": "{count} merge/split records"},
    "note.identity_conflicts": {
        "zh": "{components} 个候选客户含冲突的唯一标识，已断开 {dropped_links} 条最弱关联",
        "en": "{components} candidate persons held conflicting one-per-person identifiers; "
              "{dropped_links} weakest links dropped",
    },
    "note.identity_junk": {"zh": "无效标识（{reason}）：{count} 个", "en": "junk identifiers ({reason}): {count}"},
    "note.identity_unknown_type": {
        "zh": "未知标识类型 {id_type}：{records} 条记录未用于关联",
        "en": "unknown identifier type {id_type}: {records} records not used for linking",
    },
    "note.identity_erased_purged": {
        "zh": "已按删除请求排除 {count} 条记录", "en": "{count} records of erased persons kept out",
    },
    "note.traits_computed": {
        "zh": "已计算 {persons} 位客户的属性（截至 {as_of}，{seconds} 秒）",
        "en": "traits of {persons} persons as of {as_of} ({seconds} s)",
    },
    "note.traits_history": {"zh": "属性历史：新增 {opened}，关闭 {closed}", "en": "trait history: {opened} opened, {closed} closed"},
    "note.scores_model": {
        "zh": "{model}：时间外测试 AUC {auc}，已评分 {rows} 人",
        "en": "{model}: out-of-time AUC {auc}, {rows} persons scored",
    },
    "note.scores_clv": {
        "zh": "CLV（BG/NBD + Gamma-Gamma）：{rows} 位购买者，平均存活概率 {p_alive_mean}",
        "en": "CLV (BG/NBD + Gamma-Gamma): {rows} buyers, mean P(alive) {p_alive_mean}",
    },
    "note.scores_skipped": {"zh": "{model}：历史数据不足，未训练", "en": "{model}: not enough history to train"},
    "note.scores_no_data": {"zh": "没有订单或行为数据，未计算评分", "en": "no orders or events: no scores computed"},
    "note.tags_applied": {"zh": "已计算 {count} 个标签（截至 {as_of}）", "en": "applied {count} tags as of {as_of}"},
    "note.tag_skipped_input": {"zh": "跳过标签 {tag}：缺少 {missing}", "en": "skipped tag {tag}: {missing} not available yet"},
    "note.tag_skipped_dependency": {
        "zh": "跳过标签 {tag}：所用标签 {tags} 已跳过", "en": "skipped tag {tag}: it uses skipped tag {tags}",
    },
    "note.segment_snapshot": {
        "zh": "人群 {segment}：{members} 人（新进入 {entered}，离开 {exited}）",
        "en": "audience {segment}: {members} members ({entered} entered, {exited} left)",
    },
    "segment.saved": {"zh": "已保存人群 {segment}（版本 {version}）", "en": "Saved audience {segment} (version {version})"},
    "segment.preview": {
        "zh": "符合规则 {size:,} 人，占 {population:,} 人的 {share:.1f}%（用时 {seconds:.2f} 秒）",
        "en": "{size:,} persons match, {share:.1f}% of {population:,} ({seconds:.2f} s)",
    },
    "segment.exported": {
        "zh": "已导出 {rows:,} 人到 {path}（{date} 快照）", "en": "Exported {rows:,} members to {path} ({date} snapshot)",
    },
    "note.segment_none": {
        "zh": "工作区没有定义人群（definitions/segments/*.yaml）",
        "en": "no audiences defined in the workspace (definitions/segments/*.yaml)",
    },
    "note.recommend_evaluated": {
        "zh": "推荐模型 {model_version}：时间切分离线测试 {users} 位顾客，precision@{k} {precision}（热门基线 {baseline}），"
              "recall@{k} {recall}（基线 {baseline_recall}）",
        "en": "recommender {model_version}: time-split test on {users} customers, precision@{k} {precision} "
              "(popularity baseline {baseline}), recall@{k} {recall} (baseline {baseline_recall})",
    },
    "note.recommend_no_data": {
        "zh": "还没有购买、加购或浏览商品的记录：推荐为空，未记录模型",
        "en": "no purchases, cart adds or product views yet: no recommendations, no model recorded",
    },
    "note.recommend_written": {
        "zh": "已写入 {rows} 条个人推荐、{related} 条相关商品（{seconds} 秒）",
        "en": "{rows} personal recommendations and {related} related products written ({seconds} s)",
    },
}


def current_language(workspace_default: str | None = None) -> str:
    """The language to speak: the user's JINGZHUN_LANG, then the workspace's, then Chinese.

    A person's own setting wins over the team's workspace default.
    """
    language = (os.environ.get("JINGZHUN_LANG") or workspace_default or "zh").lower()
    return "en" if language.startswith("en") else "zh"


def t(key: str, language: str | None = None, **values: object) -> str:
    """Translate message `key` and fill in `values`.

    Example:
        >>> t("sql.rows", "en", count=3)
        '3 rows'
    """
    texts = MESSAGES[key]
    return texts[current_language(language)].format(**values)
