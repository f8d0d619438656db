"""The data-model reference, written from the table definitions themselves.

docs/data-model.md embeds this text; a test keeps the two identical, so the
documentation cannot drift from the schema.
"""

from __future__ import annotations

from jingzhun.schema.migrations import MIGRATIONS, AddColumn, canonical_tables


def schema_reference_markdown() -> str:
    """Markdown tables of every canonical table, grouped by the migration that adds it."""
    lines: list[str] = []
    latest = {table.name: table for table in canonical_tables()}
    for migration in MIGRATIONS:
        lines += [f"### Migration {migration.version}: {migration.name}", ""]
        for step in migration.steps:
            if isinstance(step, AddColumn):
                lines += [f"- adds `{step.table}.{step.column.name}` ({step.column.type}): {step.column.description}", ""]
                continue
            table = latest[step.table.name]
            lines += [f"#### `{table.name}`", "", table.description, "",
                      "| column | type | null | meaning |", "|---|---|---|---|"]
            for column in table.columns:
                null = "" if column.nullable else "NOT NULL"
                lines.append(f"| `{column.name}` | {column.type} | {null} | {column.description} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
