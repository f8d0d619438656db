"""Segment: audiences, sub-groups, lookalikes and what separates buyers.

Public functions re-exported here; the modules are internal.
"""

from jingzhun.segments.portrait_matrix import PortraitMatrix, portrait_matrix, portrait_matrix_sql

__all__ = ["PortraitMatrix", "portrait_matrix", "portrait_matrix_sql"]
