"""The canonical tables and their versioned migrations."""

from jingzhun.schema.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    AddColumn,
    CreateTable,
    Migration,
    canonical_tables,
    current_version,
    migrate,
)
from jingzhun.schema.tables import TableDef

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "AddColumn",
    "CreateTable",
    "Migration",
    "TableDef",
    "canonical_tables",
    "current_version",
    "migrate",
]
