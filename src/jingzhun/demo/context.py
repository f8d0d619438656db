"""The contract shared by the demo generator's modules.

The generator is split by source family (people and catalogue, behaviour and
commerce, marketing and social). Each family reads the same ground truth: one
`Population` of simulated customers and one `Catalog` of products, both held as
column arrays so every step stays vectorized (numpy/Arrow, no Python loop over
persons). A module receives a `DemoContext` and returns the `DemoFile`s it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

ProgressCallback = Callable[[str, int, int], None]
"""Called as progress(step_name, done, total) while long steps run."""


@dataclass(frozen=True)
class DemoFile:
    """One file the generator wrote, as a source system would have exported it."""

    source: str  # e.g. "web_events", "pos_sales", "crm_members"
    path: Path  # absolute path of the file
    rows: int  # data rows written (header excluded), malformed rows included
    malformed_rows: int = 0  # rows deliberately broken for importers to quarantine
    encoding: str = "utf-8"
    description: str = ""


@dataclass
class Population:
    """Ground truth about every simulated customer, one array element per person.

    Every array has length `size`; string arrays are numpy object or pyarrow
    string arrays; missing values are None (strings) or NaT (dates).

    Columns (all required):
        person_key: int64, 0..size-1, the true person behind every identifier.
        name: Chinese full name, e.g. "王芳".
        gender: "F" or "M".
        birth_date: datetime64[D].
        province, city: Chinese names, e.g. "浙江省", "杭州市".
        persona: one of PERSONAS (clustering ground truth).
        is_high_value: bool (lookalike ground truth).
        signup_date: datetime64[D], first contact with the brand.
        churn_date: datetime64[D] or NaT; activity decays after it.
        income_band, job: survey "small data" truth.
        phone: 11-digit mainland mobile "1xxxxxxxxxx" (truth; exports format it many ways).
        email: str or None.
        member_id: CRM member number or None (not every customer is a member).
        member_level: "普通" | "银卡" | "金卡" | "钻石" or None.
        wechat_openid: mini-program openid or None.
        wechat_unionid: WeChat open-platform unionid or None.
        douyin_user_id, weibo_user_id: platform user ids or None.
        device_ids: list-like per person (app installs; 0..3).
        anonymous_ids: list-like per person (web cookies; 0..4).
        uses_web, uses_app, uses_miniprogram, shops_offline: bool channel mix.
        home_store_id: store_id of the usual offline store, or None.
        activity: float64 relative activity level (mean 1.0).

    Added columns (people.py):
        aov_multiplier: float64 order-value multiplier (persona base x noise; x1.5
            for is_high_value), used by commerce for basket value.
    """

    size: int
    columns: dict[str, np.ndarray | pa.Array]

    def __getitem__(self, name: str) -> np.ndarray | pa.Array:
        return self.columns[name]


PERSONAS: tuple[str, ...] = (
    "beauty_enthusiast",  # 美妆达人: cosmetics + beauty tools, app heavy
    "fashion_trendsetter",  # 时尚潮人: apparel, livestream viewer, young
    "home_maker",  # 居家主理人: home goods, mini-program, 30-49
    "bargain_hunter",  # 优惠猎手: coupon-sensitive, buys in promotions only
    "premium_loyalist",  # 高端忠粉: few, high AOV, offline stores, high value
)

CATEGORIES: tuple[str, ...] = ("apparel", "cosmetics", "beauty_tools", "home")


@dataclass
class Catalog:
    """The product catalogue, one element per SKU.

    Columns (all required):
        product_id: "P000123"; sku: "SKU-000123"; barcode: valid EAN-13 string.
        name: Chinese product name; brand; category: one of CATEGORIES;
        subcategory: e.g. "foundation", "beauty_sponge", "dress", "towel";
        product_line: a named line (the fans-vs-buyers pattern uses one);
        price, cost: float64 CNY with 2 decimals;
        launch_date: datetime64[D]; is_consumable: bool.

    Added columns (catalog.py):
        base_name: the product (SPU) name without the variant; variant: "M", "#01", "50ml".
        popularity: float64 relative long-tail weight (Zipf-like within subcategory).
        is_spike: bool, True for the one SKU of the livestream spike product
            (see catalog.spike_date and catalog.FANS_PRODUCT_LINE).
    """

    size: int
    columns: dict[str, np.ndarray | pa.Array]

    def __getitem__(self, name: str) -> np.ndarray | pa.Array:
        return self.columns[name]


@dataclass
class DemoContext:
    """Everything a source-family module needs to write its files."""

    out_dir: Path  # the workspace; files go under out_dir / "data", truth under out_dir / "demo-truth"
    seed: int
    start: date  # first day of simulated history (inclusive)
    end: date  # last day of simulated history (inclusive)
    population: Population
    catalog: Catalog
    stores: pa.Table  # store_id, name, province, city, opened_on
    progress: ProgressCallback | None = None
    shared: dict[str, object] = field(default_factory=dict)  # hand-offs between modules
    views_per_visit: float = 1.8  # mean product views per own-channel visit (browsing depth)

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "data"

    @property
    def truth_dir(self) -> Path:
        return self.out_dir / "demo-truth"

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible random stream per named step.

        Separate streams keep one module's changes from shifting every other file.
        """
        digest = sum((i + 1) * ord(ch) for i, ch in enumerate(stream))
        return np.random.default_rng([self.seed, digest])

    def report(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(step, done, total)
