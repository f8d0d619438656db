"""The demo workspace's audiences: definitions/segments/demo.yaml, written by `demo generate`.

Examples a marketer would build on this retailer's data, each exercising a part of
the rule language, and one (`holiday_women_fashion_beauty`) that targets the planted
holiday pattern so it can be scored against demo-truth/holiday_shoppers.parquet.
The holiday windows come from the same calendar the generator plants them with.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import yaml

from jingzhun.demo.calendar import HOLIDAY_WINDOW_DAYS, holidays
from jingzhun.demo.truth import HOLIDAY_GROUP, HOLIDAY_GROUP_CATEGORIES


def holiday_windows(start: date, end: date) -> list[dict[str, str]]:
    """{from, to} local dates of each 38 妇女节 / 双11 window in the demo period."""
    pad = timedelta(days=HOLIDAY_WINDOW_DAYS)
    return [{"from": (day - pad).isoformat(), "to": (day + pad).isoformat()}
            for name, day in holidays(start, end) if name in HOLIDAY_GROUP]


def demo_audiences(start: date, end: date) -> list[dict]:
    """The demo's audience definitions as YAML-ready data."""
    bought_near_holiday = [{"order": {"product": {"category": list(HOLIDAY_GROUP_CATEGORIES)}, "window": window}}
                           for window in holiday_windows(start, end)]
    return [
        {"segment_id": "holiday_women_fashion_beauty",
         "name_zh": "妇女节/双11 女性服饰美妆买家", "name_en": "Women buying apparel or cosmetics around 38 / Double 11",
         "description": {"zh": "女性，在妇女节或双11 前后 3 天内买过服饰或美妆。",
                         "en": "Women who bought apparel or cosmetics within 3 days of Women's Day or Double 11."},
         "rule": {"all": [{"trait": "gender", "op": "=", "value": "F"}, {"any": bought_near_holiday}]}},
        {"segment_id": "holiday_women_on_wechat",
         "name_zh": "可微信触达的节日女性买家", "name_en": "Holiday women buyers reachable on WeChat",
         "rule": {"all": [{"segment": "holiday_women_fashion_beauty"},
                          {"has_identifier": ["wechat_openid", "wechat_unionid"]}]}},
        {"segment_id": "foundation_twice_no_sponge",
         "name_zh": "近 180 天两次买粉底未买美妆蛋", "name_en": "Foundation twice in 180 days, no sponge",
         "rule": {"all": [{"order": {"product": {"subcategory": "foundation"}, "window": {"last": "180d"},
                                     "count": {"op": ">=", "value": 2}}},
                          {"not": {"order": {"product": {"subcategory": "beauty_sponge"},
                                             "window": {"last": "180d"}}}}]}},
        {"segment_id": "young_women_beauty_browsers",
         "name_zh": "25-34 岁近 30 天浏览美妆的女性", "name_en": "Women 25-34 browsing cosmetics in 30 days",
         "rule": {"all": [{"trait": "gender", "op": "=", "value": "F"},
                          {"trait": "age", "op": "between", "value": [25, 34]},
                          {"event": {"name": "Product Viewed", "product": {"category": "cosmetics"},
                                     "window": {"last": "30d"}, "count": {"op": ">=", "value": 2}}}]}},
        {"segment_id": "valuable_at_risk",
         "name_zh": "高价值流失风险客户", "name_en": "Valuable customers at risk of churning",
         "rule": {"all": [{"score": "clv_365d", "of": "percentile", "op": ">=", "value": 0.8},
                          {"score": "churn_90d", "op": ">=", "value": 0.5}]}},
    ]


def write_demo_audiences(workspace_root: Path, start: date, end: date) -> Path:
    """Write definitions/segments/demo.yaml under the workspace folder."""
    path = Path(workspace_root) / "definitions" / "segments" / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(demo_audiences(start, end), allow_unicode=True, sort_keys=False)
    path.write_text("# Demo audiences (written by `jingzhun demo generate`); see docs/segments.md.\n" + text,
                    encoding="utf-8")
    return path
