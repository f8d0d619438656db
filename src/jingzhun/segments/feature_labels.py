"""Readable names of portrait features, in Chinese and English.

Clustering descriptions, lookalike drivers and feature insight all show marketers
which traits matter; they name them the same way through `feature_label`.
"""

from __future__ import annotations

from jingzhun.engine import Engine

TRAIT_LABELS: dict[str, tuple[str, str]] = {
    "age": ("年龄", "Age"),
    "price_sensitivity": ("价格敏感度（1-5）", "Price sensitivity (1-5)"),
    "active_days_30d": ("近30天活跃天数", "Active days (30 days)"),
    "active_days_90d": ("近90天活跃天数", "Active days (90 days)"),
    "sessions_90d": ("近90天访问次数", "Sessions (90 days)"),
    "page_views_90d": ("近90天浏览页面数", "Page views (90 days)"),
    "product_views_90d": ("近90天浏览商品数", "Product views (90 days)"),
    "cart_adds_90d": ("近90天加购次数", "Cart adds (90 days)"),
    "events_total": ("累计行为事件数", "Events (all time)"),
    "orders_total": ("累计订单数", "Orders (all time)"),
    "orders_365d": ("近一年订单数", "Orders (last year)"),
    "gmv_total": ("累计消费额（元）", "Spend (all time, CNY)"),
    "gmv_365d": ("近一年消费额（元）", "Spend (last year, CNY)"),
    "aov": ("客单价（元）", "Average order value (CNY)"),
    "refund_rate": ("退货率", "Refund rate"),
    "days_since_last_order": ("距上次下单天数", "Days since last order"),
    "online_order_share": ("线上订单占比", "Online order share"),
    "offline_order_share": ("门店订单占比", "In-store order share"),
    "coupon_order_share": ("用券订单占比", "Coupon order share"),
    "holiday_order_share": ("节假日订单占比", "Holiday order share"),
    "livestream_views_90d": ("近90天直播观看次数", "Livestream views (90 days)"),
    "social_interactions_90d": ("近90天社交互动次数", "Social interactions (90 days)"),
    "follows_official_account": ("关注公众号", "Follows the official account"),
    "rfm_r": ("RFM 最近购买得分", "RFM recency score"),
    "rfm_f": ("RFM 购买频次得分", "RFM frequency score"),
    "rfm_m": ("RFM 消费金额得分", "RFM monetary score"),
    "has_phone": ("有手机号", "Has a phone number"),
    "has_email": ("有邮箱", "Has an email address"),
    "has_wechat": ("有微信", "Has WeChat"),
    "gender": ("性别", "Gender"),
    "age_band": ("年龄段", "Age band"),
    "member_level": ("会员等级", "Member level"),
    "favourite_category": ("最常买品类", "Favourite category"),
    "preferred_channel": ("常用渠道", "Preferred channel"),
    "device_type": ("设备类型", "Device type"),
    "price_band": ("价格带", "Price band"),
    "rfm_class": ("RFM 客户分层", "RFM class"),
    "income_band": ("收入档", "Income band"),
    "job": ("职业", "Job"),
    "province": ("省份", "Province"),
}
SCORE_LABELS: dict[str, tuple[str, str]] = {
    "purchase_propensity_30d": ("30天购买倾向", "Purchase propensity (30 days)"),
    "churn_90d": ("90天流失风险", "Churn risk (90 days)"),
    "clv_365d": ("预测未来一年消费额", "Predicted spend, next year (CLV)"),
    "clv_expected_purchases_365d": ("预测未来一年购买次数", "Predicted purchases, next year"),
    "p_alive": ("仍活跃概率", "Probability still active"),
}
YES_NO_TRAITS = frozenset({"follows_official_account", "has_phone", "has_email", "has_wechat"})


def feature_label(feature: str, tag_names: dict[str, tuple[str, str]] | None = None) -> tuple[str, str]:
    """A portrait-matrix column's readable (zh, en) name.

    Example:
        >>> feature_label("member_level=钻石")
        ('会员等级 = 钻石', 'Member level = 钻石')
    """
    kind, _, name = feature.partition(":")
    if kind == "tag" and name:
        zh, en = (tag_names or {}).get(name, (name, name))
        return f"标签：{zh}", f"Tag: {en}"
    if kind == "score" and name:
        zh, en = SCORE_LABELS.get(name, (name, name))
        return f"评分：{zh}", f"Score: {en}"
    trait, equals, value = feature.partition("=")
    zh, en = TRAIT_LABELS.get(trait, (trait, trait))
    return (f"{zh} = {value}", f"{en} = {value}") if equals else (zh, en)


def tag_names(engine: Engine) -> dict[str, tuple[str, str]]:
    """tag_id → (name_zh, name_en) of the latest version of each tag definition."""
    if not engine.table_exists("tag_definitions"):
        return {}
    rows = engine.query("SELECT tag_id, version, name_zh, name_en FROM tag_definitions").to_pylist()
    latest: dict[str, tuple[int, str, str]] = {}
    for row in rows:
        if row["tag_id"] not in latest or row["version"] > latest[row["tag_id"]][0]:
            latest[row["tag_id"]] = (row["version"], row["name_zh"], row["name_en"])
    return {tag: (zh or tag, en or tag) for tag, (_, zh, en) in latest.items()}
