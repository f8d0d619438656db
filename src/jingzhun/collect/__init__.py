"""Collect: the Segment-compatible HTTP collector, file importers, quarantine, stock ledger."""

from jingzhun.collect.quarantine import list_quarantine, quarantine_rows, reasons_summary

__all__ = ["list_quarantine", "quarantine_rows", "reasons_summary"]
