"""Activate: recommendations, personalized messages, coupons, campaigns and journeys.

Public functions are re-exported here; the modules are internal. Recommendations (猜你喜欢, 热门推荐,
新品上市, related products) are in recommend*.py.
"""

# ---- personalized content and coupons (content.py, channels.py, coupons.py) ----
from jingzhun.activation.channels import CHANNELS as CHANNELS
from jingzhun.activation.channels import ChannelLimitError as ChannelLimitError
from jingzhun.activation.channels import ContentError as ContentError
from jingzhun.activation.channels import count_sms as count_sms
from jingzhun.activation.content import RenderedMessage as RenderedMessage
from jingzhun.activation.content import context_query as context_query
from jingzhun.activation.content import preview_message as preview_message
from jingzhun.activation.content import render_messages as render_messages
from jingzhun.activation.content_templates import ContentSettings as ContentSettings
from jingzhun.activation.content_templates import MessageTemplate as MessageTemplate
from jingzhun.activation.content_templates import (
    install_starter_templates as install_starter_templates,
)
from jingzhun.activation.content_templates import list_templates as list_templates
from jingzhun.activation.content_templates import load_template as load_template
from jingzhun.activation.content_templates import parse_template as parse_template
from jingzhun.activation.coupons import Coupon as Coupon
from jingzhun.activation.coupons import CouponDefinition as CouponDefinition
from jingzhun.activation.coupons import CouponError as CouponError
from jingzhun.activation.coupons import Redemptions as Redemptions
from jingzhun.activation.coupons import coupon_for as coupon_for
from jingzhun.activation.coupons import issue_coupons as issue_coupons
from jingzhun.activation.coupons import match_redemptions as match_redemptions
from jingzhun.activation.coupons import parse_coupon_definition as parse_coupon_definition
