"""Which product a visit is about: popularity x price taste x age, among launched SKUs.

Sampling uses one flattened CDF per (category, age group, price tier) group, so a
single `searchsorted` picks products for millions of visits at once.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from jingzhun.demo.catalog import FANS_PRODUCT_LINE
from jingzhun.demo.context import CATEGORIES, Catalog, Population

PRICE_TILT = (-0.8, 0.0, 0.8)  # weight x price**tilt for low / mid / high spenders
FANS_LINE_YOUNG = 3.0  # weight multiplier of FANS_PRODUCT_LINE for buyers under 30
FANS_LINE_OLDER = 0.4  # ... and for buyers 30 and over
YOUNG_AGE = 30


class ProductSampler:
    """Draws SKU indices for visits given the visitor and the visit's category and day."""

    def __init__(self, catalog: Catalog, pop: Population, ref: date | None = None) -> None:
        self.catalog = catalog
        self.launch = np.asarray(catalog["launch_date"], dtype="datetime64[D]")
        category = np.asarray(catalog["category"])
        self.cat_code = np.array([CATEGORIES.index(c) for c in category], dtype=np.int8)
        ref_day = np.datetime64(ref or date(2024, 11, 1), "D")
        self.ref_day = ref_day
        self.young = (ref_day - pop["birth_date"]).astype(int) < YOUNG_AGE * 365.25
        aov = pop["aov_multiplier"]
        self.tier = np.where(aov < 0.75, 0, np.where(aov > 1.4, 2, 1)).astype(np.int8)
        self.cdf_all = self._cdf(np.ones(catalog.size, dtype=bool))
        self.cdf_old = self._cdf(self.launch < np.datetime64(ref_day))

    def _cdf(self, allowed: np.ndarray) -> np.ndarray:
        """Flattened per-group CDFs; group g occupies values (g, g + 1]."""
        price = np.asarray(self.catalog["price"], dtype=float)
        pop_w = np.asarray(self.catalog["popularity"], dtype=float)
        fans = np.asarray(self.catalog["product_line"]) == FANS_PRODUCT_LINE
        rows = []
        for cat in range(len(CATEGORIES)):
            for young in (False, True):
                line = np.where(fans, FANS_LINE_YOUNG if young else FANS_LINE_OLDER, 1.0)
                for tilt in PRICE_TILT:
                    w = pop_w * price**tilt * line * (self.cat_code == cat) * allowed
                    rows.append(np.cumsum(w) / w.sum())
        return np.concatenate([r + g for g, r in enumerate(rows)])

    def group(self, person: np.ndarray, category: np.ndarray) -> np.ndarray:
        return (category.astype(np.int64) * 2 + self.young[person]) * 3 + self.tier[person]

    def sample(self, rng: np.random.Generator, person: np.ndarray, category: np.ndarray,
               day: np.ndarray, start: date) -> np.ndarray:
        """SKU per visit; products launched after the visit day are redrawn."""
        group = self.group(person, category)
        size = self.catalog.size
        visit_day = np.datetime64(start, "D") + day.astype("timedelta64[D]")
        sku = self._draw(rng, self.cdf_all, group, size)
        for _ in range(3):
            late = np.flatnonzero(self.launch[sku] > visit_day)
            if not len(late):
                break
            sku[late] = self._draw(rng, self.cdf_all, group[late], size)
        late = np.flatnonzero(self.launch[sku] > visit_day)
        sku[late] = self._draw(rng, self.cdf_old, group[late], size)
        return sku.astype(np.int32)

    @staticmethod
    def _draw(rng: np.random.Generator, cdf: np.ndarray, group: np.ndarray,
              size: int) -> np.ndarray:
        u = group + rng.random(len(group)) * (1 - 1e-12)
        idx = np.searchsorted(cdf, u, side="right")
        return np.minimum(idx, len(cdf) - 1) % size

    def sample_in_subcategory(self, rng: np.random.Generator, subcategory: str,
                              n: int) -> np.ndarray:
        """n SKUs of one subcategory by popularity (launched before the period)."""
        sub = np.asarray(self.catalog["subcategory"]) == subcategory
        w = np.asarray(self.catalog["popularity"], dtype=float) * sub * (
            self.launch < self.ref_day)
        return rng.choice(self.catalog.size, size=n, p=w / w.sum()).astype(np.int32)
