"""DuckDB SQL that renders one event row as a Segment-spec JSON line, per channel.

The SQL is a projection over the chunk table `ev` built by events_json, where
everything that varies per event (page path and title, user agent, event name)
is already a plain column. The event kind (index into behaviour.KINDS) picks the
message type and a small `json_object` of the properties that kind has. Plain
`json_object`s are used instead of stripping nulls with `json_merge_patch`, which
measured ~3x slower per row; the few optional keys get their own CASE branch.
Malformed rows (`bad`) are cut in the middle, as a crashed writer leaves them.
"""

from __future__ import annotations

from jingzhun.demo.events_context import MP_APPID

SITE = "https://www.jingzhun-demo.cn"
LIVE_TITLE = "素野新品首发直播"

# (kind, web path prefix, mini-program path prefix, suffix source, title); suffix
# sources: "" none, "product" product_id, "live" live_id, "category", "query" (encoded).
PAGES = (
    (0, "/", "pages/index/index", "", "首页"),
    (1, "/login", "pages/login/login", "", "登录"),
    (2, "/register", "pages/register/register", "", "注册"),
    (3, "/live/", "pages/live/room?id=", "live", "直播间"),
    (4, "/search", "pages/search/search?q=", "query", "搜索"),
    (5, "/category/", "pages/category/category?c=", "category", "分类"),
    (6, "/products/", "pages/goods/detail?id=", "product", ""),
    (7, "/products/", "pages/goods/detail?id=", "product", ""),
    (8, "/cart", "pages/cart/cart", "", "购物车"),
    (9, "/checkout", "pages/order/confirm", "", "确认订单"),
    (10, "/checkout", "pages/order/confirm", "", "确认订单"),
    (11, "/checkout/success", "pages/order/success", "", "支付成功"),
)
EVENT_NAMES = (None, None, "Signed Up", "Livestream Viewed", "Products Searched",
               "Product List Viewed", "Product Viewed", "Product Added", "Cart Viewed",
               "Checkout Started", "Coupon Applied", "Order Completed")

TS = "strftime(epoch_ms({c}), '%Y-%m-%dT%H:%M:%S.%gZ')"
HEAD = ("'messageId', message_id, 'anonymousId', anonymous_id, 'userId', user_id, "
        f"'timestamp', {TS.format(c='ts')}, 'originalTimestamp', {TS.format(c='ots')}, "
        f"'sentAt', {TS.format(c='sat')}, 'receivedAt', {TS.format(c='rat')}")

PRODUCT = "'product_id', product_id, 'sku', sku, 'category', category, 'name', pname, " \
          "'brand', brand, 'price', price"
ORDER = "'order_id', order_id, 'products', to_json(products)"
PROPERTIES = f"""CASE kind
    WHEN 2 THEN json_object('method', signup_method)
    WHEN 3 THEN json_object('livestream_id', 'LS' || live_id, 'title', '{LIVE_TITLE}',
                            'product_id', product_id)
    WHEN 4 THEN json_object('query', query)
    WHEN 5 THEN json_object('list_id', category, 'category', category)
    WHEN 6 THEN json_object({PRODUCT}, 'currency', 'CNY')
    WHEN 7 THEN json_object('cart_id', cart_id, {PRODUCT}, 'quantity', 1, 'currency', 'CNY')
    WHEN 8 THEN json_object('cart_id', cart_id, 'products', json_array(json_object(
                            'product_id', product_id, 'sku', sku, 'price', price,
                            'quantity', 1)))
    WHEN 9 THEN CASE WHEN order_id IS NULL  -- an abandoned checkout: the cart's product
        THEN json_object('products', json_array(json_object('product_id', product_id,
                         'sku', sku, 'price', price, 'quantity', 1)), 'value', price,
                         'revenue', price, 'currency', 'CNY')
        WHEN coupon IS NULL
        THEN json_object({ORDER}, 'value', revenue, 'revenue', revenue, 'currency', 'CNY')
        ELSE json_object({ORDER}, 'value', revenue, 'revenue', revenue, 'coupon', coupon,
                         'currency', 'CNY') END
    WHEN 10 THEN json_object('order_id', order_id, 'coupon_id', coupon, 'discount', discount)
    WHEN 11 THEN CASE WHEN coupon IS NULL
        THEN json_object({ORDER}, 'total', revenue, 'revenue', revenue, 'discount', discount,
                         'currency', 'CNY')
        ELSE json_object({ORDER}, 'total', revenue, 'revenue', revenue, 'discount', discount,
                         'coupon', coupon, 'currency', 'CNY') END
END"""

TRAITS = ("json_merge_patch('{}', json_object('phone', t_phone, 'email', t_email, "
          "'member_level', t_level{wechat}))")
COMMON = "'ip', ip, 'locale', 'zh-CN', 'timezone', 'Asia/Shanghai', 'userAgent', ua"
DEVICE_OS = ("'os', json_object('name', os_name, 'version', os_version)")
LIBRARY = "json_object('name', lib_name, 'version', lib_version)"

WEB_PAGE = ("json_object('path', page_path, 'referrer', referrer, 'search', page_search, "
            "'title', page_title, 'url', page_url)")
CONTEXT = {
    "web": f"""CASE WHEN kind = 0 AND utm_source IS NOT NULL
        THEN json_object('library', {LIBRARY}, 'page', {WEB_PAGE}, 'campaign', json_object(
             'source', utm_source, 'medium', utm_medium, 'name', utm_campaign), {COMMON})
        ELSE json_object('library', {LIBRARY}, 'page', {WEB_PAGE}, {COMMON}) END""",
    "app": f"""json_object('library', {LIBRARY}, 'app', json_object('name', '精准',
        'version', app_version, 'build', replace(app_version, '.', '') || '00',
        'namespace', 'cn.jingzhun.app'), 'device', json_object('id', anonymous_id,
        'manufacturer', manufacturer, 'model', model, 'type', os_type), {DEVICE_OS}, {COMMON})""",
    "miniprogram": f"""json_object('library', {LIBRARY}, 'app', json_object(
        'name', '精准商城小程序', 'version', '3.4.0', 'appid', '{MP_APPID}'),
        'page', json_object('path', page_path, 'title', page_title),
        'device', json_object('manufacturer', manufacturer, 'model', model, 'type', os_type),
        {DEVICE_OS}, {COMMON})""",
}


def _landing(channel: str) -> str:
    if channel == "app":
        return f"json_object('type', 'screen', 'name', 'Home', {HEAD}, " \
               "'properties', '{}'::JSON, 'context', ctx)"
    extra = ", 'url', page_url, 'referrer', referrer" if channel == "web" else ""
    return (f"json_object('type', 'page', 'name', page_title, {HEAD}, 'properties', "
            f"json_object('path', page_path, 'title', page_title{extra}), 'context', ctx)")


def _query(channel: str) -> str:
    wechat = (", 'wechat_openid', t_openid, 'wechat_unionid', t_unionid"
              if channel == "miniprogram" else "")
    identify = (f"json_object('type', 'identify', {HEAD}, 'traits', "
                f"{TRAITS.replace('{wechat}', wechat)}, 'context', ctx)")
    track = (f"json_object('type', 'track', 'event', event_name, {HEAD}, "
             f"'properties', {PROPERTIES}, 'context', ctx)")
    line = f"CASE kind WHEN 0 THEN {_landing(channel)} WHEN 1 THEN {identify} ELSE {track} END"
    return (f"SELECT CASE WHEN bad THEN substr(j, 1, length(j) // 2) ELSE j END || chr(10) "
            f"AS line FROM (SELECT ({line})::VARCHAR AS j, bad FROM "
            f"(SELECT *, {CONTEXT[channel]} AS ctx FROM ev))")


EVENT_SQL = {ch: _query(ch) for ch in ("web", "app", "miniprogram")}
