"""File importers: CSV (UTF-8, UTF-8-BOM, GBK, GB18030), Excel, JSON lines and Parquet
into canonical tables, with mappings, validation, quarantine, idempotency and resume."""

from jingzhun.collect.importers.encoding import detect_encoding
from jingzhun.collect.importers.kinds import KINDS
from jingzhun.collect.importers.mapping import Mapping, builtin_kinds, builtin_mapping, load_mapping
from jingzhun.collect.importers.retry import RetryResult, retry_quarantine
from jingzhun.collect.importers.run import ImportFileError, ImportResult, import_file

__all__ = [
    "KINDS",
    "ImportFileError",
    "ImportResult",
    "Mapping",
    "RetryResult",
    "builtin_kinds",
    "builtin_mapping",
    "detect_encoding",
    "import_file",
    "load_mapping",
    "retry_quarantine",
]
