"""Schema migrations on every engine, and the transpile gate for the canonical DDL."""

import pyarrow as pa
import pytest
from sqlglot import exp

from jingzhun.core.errors import SchemaError
from jingzhun.engine import Column, Engine, render
from jingzhun.schema import LATEST_VERSION, MIGRATIONS, canonical_tables, current_version, migrate
from jingzhun.schema.migrations import AddColumn, _record


def test_new_storage_migrates_to_latest(engine: Engine) -> None:
    assert current_version(engine) == 0
    applied = migrate(engine)
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
    assert current_version(engine) == LATEST_VERSION
    expected = {table.name for table in canonical_tables()} | {"schema_migrations"}
    assert set(engine.list_tables()) == expected
    assert migrate(engine) == []  # idempotent


def test_old_workspace_is_brought_forward_with_its_data(engine: Engine) -> None:
    migrate(engine, target=1)
    assert current_version(engine) == 1
    assert not engine.table_exists("persons")
    engine.execute("SELECT 1")  # statements run too
    engine.write_table("stores", pa.table({"store_id": ["S01"], "name": ["杭州湖滨店"]}))
    applied = migrate(engine)
    assert [m.version for m in applied] == list(range(2, LATEST_VERSION + 1))
    assert engine.read_table("stores").column("name").to_pylist() == ["杭州湖滨店"]
    assert engine.table_exists("persons")


def test_add_column_step_keeps_rows(engine: Engine) -> None:
    migrate(engine, target=1)
    engine.write_table("stores", pa.table({"store_id": ["S01", "S02"]}))
    AddColumn("stores", Column("district", "VARCHAR")).apply(engine)
    AddColumn("stores", Column("district", "VARCHAR")).apply(engine)  # idempotent
    stores = engine.read_table("stores")
    assert "district" in stores.column_names and stores.num_rows == 2


def test_newer_schema_is_refused(engine: Engine) -> None:
    migrate(engine)
    from jingzhun.schema.migrations import Migration

    _record(engine, Migration(LATEST_VERSION + 1, "from the future", ()))
    with pytest.raises(SchemaError, match="newer"):
        migrate(engine)


@pytest.mark.parametrize("definition", canonical_tables(), ids=lambda d: d.name)
def test_transpile_gate_canonical_ddl(definition) -> None:
    """Every canonical table's column types render for both engines with RAISE."""
    for column in definition.columns:
        kind = exp.DataType.build(column.type, dialect="duckdb")
        cast = exp.cast(exp.column(column.name), kind)
        assert render(cast, "duckdb") and render(cast, "spark")


def test_money_is_decimal_and_time_is_utc() -> None:
    for definition in canonical_tables():
        for column in definition.columns:
            if column.name.endswith(("amount", "price", "spend", "cost")) and column.name != "discount_amount_pct":
                assert column.type.startswith("DECIMAL"), f"{definition.name}.{column.name}"
            if column.name.endswith("_at"):
                assert column.type == "TIMESTAMPTZ", f"{definition.name}.{column.name}"


def test_data_model_doc_matches_the_schema() -> None:
    from pathlib import Path

    from jingzhun.schema.reference import schema_reference_markdown

    doc = (Path(__file__).parents[2] / "docs" / "data-model.md").read_text(encoding="utf-8")
    assert schema_reference_markdown() in doc, "regenerate docs/data-model.md from schema_reference_markdown()"


def test_migrations_are_numbered_one_after_another() -> None:
    """Versions 1, 2, 3 … in order, each once: `migrate` applies those after the stored version,
    so a version added out of order would be skipped on workspaces already past it."""
    from jingzhun.schema.migrations import LATEST_VERSION, MIGRATIONS

    versions = [migration.version for migration in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == LATEST_VERSION
