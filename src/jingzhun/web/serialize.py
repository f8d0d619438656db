"""What crosses from the engine process to the HTTP process: JSON bytes, files, or an error.

The engine process turns a stage's result (DataFrames, Arrow tables, dataclasses,
pydantic models, numpy scalars, decimals, timestamps) into JSON-ready data, masks
personal identifiers when the caller's role must not see them, and serializes it with
orjson there, so the HTTP process — which also acknowledges collector traffic — only
copies bytes to the socket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from jingzhun.core.errors import JingzhunError
from jingzhun.web.masking import mask_pii


@dataclass(frozen=True)
class FileResult:
    """A download: the bytes, their media type and the file name the browser saves."""

    content: bytes
    media_type: str
    filename: str


@dataclass(frozen=True)
class ErrorInfo:
    """An error as the API reports it, in both languages (the HTTP process picks one)."""

    status: int
    code: str
    field: str | None
    message_en: str
    message_zh: str
    fix_en: str = ""
    fix_zh: str = ""

    def body(self, language: str) -> dict[str, Any]:
        zh = language.startswith("zh")
        message = self.message_zh if zh else self.message_en
        fix = self.fix_zh if zh else self.fix_en
        return {"error": {"code": self.code, "field": self.field, "message": message, "fix": fix or None}}


def error_code(error: JingzhunError) -> str:
    """`AudienceError` → `audience_error`, `PersonNotFound` → `person_not_found`."""
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def error_status(error: JingzhunError) -> int:
    """404 for a missing object, 409 for a taken name, else 400 (the request is at fault)."""
    name = type(error).__name__
    if name.endswith("NotFound") or _unknown_thing(error):
        return 404
    return 409 if name.endswith("Conflict") else 400


def _unknown_thing(error: JingzhunError) -> bool:
    """Stages say `unknown audience 'x'` / `no campaign 'x'`: a missing object, answered 404."""
    text = error.message.lower()
    return error.field in ("segment_id", "campaign_id", "template_id", "tag_id", "key_id", "ID", "person",
                           "product_id", "job_id", "quarantine_id", "username") \
        and (text.startswith(("unknown ", "no ")) or " not found" in text or "does not exist" in text)


def error_info(error: BaseException) -> ErrorInfo:
    """How the API reports `error`: a JingzhunError with its field and both languages, else a 500."""
    if isinstance(error, JingzhunError):
        return ErrorInfo(error_status(error), error_code(error), error.field, error.message, error.message_zh,
                         error.fix, error.fix_zh)
    if isinstance(error, ValidationError):  # a stage's pydantic definition refused what the caller sent
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": str(error)}
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        message = str(first.get("msg", "invalid"))
        return ErrorInfo(400, "invalid_definition", field, f"{field or 'definition'}: {message}.",
                         f"{field or '定义'}：{message}。", "see the definition's fields in the docs",
                         "请对照文档中的字段说明")
    detail = "".join(traceback.format_exception_only(error)).strip()[:300]
    return ErrorInfo(500, "internal_error", None, f"the server failed: {detail}", f"服务器出错：{detail}",
                     "retry; if it persists, report it with the server's log", "请重试；如仍失败，请附服务器日志报告问题")


def jsonable(value: Any) -> Any:
    """`value` as JSON-ready data (dicts, lists, str, int, float, bool, None)."""
    kind = type(value)
    if value is None or kind in (str, bool, int):
        return value
    if kind is float or isinstance(value, np.floating):  # numpy's float64 is a float orjson cannot write
        number = float(value)
        return number if math.isfinite(number) else None
    converter = _CONVERTERS.get(type(value))
    if converter is not None:
        return converter(value)
    return _convert_other(value)


def _frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    frame = frame.reset_index(drop=not _named_index(frame))
    return [{str(k): jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)


def _convert_other(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _frame(value)
    if isinstance(value, pd.Series):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, pa.Table):
        return [{k: jsonable(v) for k, v in row.items()} for row in value.to_pylist()]
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="json", by_alias=True, exclude_none=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if value is pd.NaT or (not isinstance(value, (list, dict)) and _is_missing(value)):
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _timestamp(value: pd.Timestamp) -> str | None:
    return None if pd.isna(value) else value.isoformat()


_CONVERTERS: dict[type, Any] = {
    dt.datetime: lambda v: v.isoformat(), dt.date: lambda v: v.isoformat(),
    pd.Timestamp: _timestamp, decimal.Decimal: lambda v: float(v) if v.is_finite() else None,
    np.float64: lambda v: jsonable(float(v)), np.int64: int, np.bool_: bool, np.int32: int, np.float32:
    lambda v: jsonable(float(v)),
}


def encode(result: Any, mask: bool) -> tuple[str, Any]:
    """The reply for `result`: ("file", FileResult) or ("json", bytes), masked when asked."""
    if isinstance(result, FileResult):
        return "file", result
    data = jsonable(result)
    if mask:
        data = mask_pii(data)
    return "json", orjson.dumps(data)
