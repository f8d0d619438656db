"""Realistic demo data for jingzhun: a Chinese omnichannel retailer's source files.

`generate_demo` writes event logs, online orders, POS exports, a CRM workbook and
the catalogue as the real systems export them, plus the ground truth
(`demo-truth/`) that the analytics must recover. See docs/demo-data.md.
"""

from jingzhun.demo.context import (
    CATEGORIES,
    PERSONAS,
    Catalog,
    DemoContext,
    DemoFile,
    Population,
    ProgressCallback,
)
from jingzhun.demo.generator import DemoSummary, generate_demo, make_context

__all__ = [
    "CATEGORIES",
    "PERSONAS",
    "Catalog",
    "DemoContext",
    "DemoFile",
    "DemoSummary",
    "Population",
    "ProgressCallback",
    "generate_demo",
    "make_context",
]
