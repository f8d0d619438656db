"""jingzhun (精准): open-source precision marketing on DuckDB or Apache Spark.

Stages, left to right: collect → identify → portray → segment → activate → measure,
with analyze beside them. `core`, `engine` and `schema` are the foundation every stage
stands on; `cli` and `web` are the outer shell.
"""

__version__ = "0.1.0"
