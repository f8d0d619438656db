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
