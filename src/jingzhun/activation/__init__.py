"""Activate: recommendations, personalized messages, coupons, campaigns and journeys.

Public functions are re-exported here; the modules are internal. Recommendations (猜你喜欢, 热门推荐,
新品上市, related products) are in recommend*.py; the decision API in decisions*.py; lead
distribution in leads*.py.
"""

# ---- personalized content and coupons (content.py, channels.py, coupons.py), campaigns (campaigns.py,
# policy.py, delivery.py, sending.py, tracking.py); ruff keeps the imports sorted by module ----
from jingzhun.activation.campaign_results import CampaignResults as CampaignResults
from jingzhun.activation.campaign_results import campaign_results as campaign_results
from jingzhun.activation.campaigns import CampaignDefinition as CampaignDefinition
from jingzhun.activation.campaigns import CampaignError as CampaignError
from jingzhun.activation.campaigns import list_campaigns as list_campaigns
from jingzhun.activation.campaigns import load_campaign as load_campaign
from jingzhun.activation.campaigns import parse_campaign as parse_campaign
from jingzhun.activation.campaigns import read_campaign_file as read_campaign_file
from jingzhun.activation.campaigns import save_campaign as save_campaign
from jingzhun.activation.campaigns import set_campaign_status as set_campaign_status
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
from jingzhun.activation.decisions import Decider as Decider
from jingzhun.activation.decisions import Decision as Decision
from jingzhun.activation.decisions import DecisionError as DecisionError
from jingzhun.activation.decisions import append_decisions as append_decisions
from jingzhun.activation.decisions import build_snapshot as build_snapshot
from jingzhun.activation.decisions import decide_once as decide_once
from jingzhun.activation.decisions import in_memory as in_memory
from jingzhun.activation.decisions import load_snapshot as load_snapshot
from jingzhun.activation.decisions import logged_impressions as logged_impressions
from jingzhun.activation.decisions import refresh_snapshot as refresh_snapshot
from jingzhun.activation.decisions import snapshot_fingerprint as snapshot_fingerprint
from jingzhun.activation.decisions_settings import DecisionSettings as DecisionSettings
from jingzhun.activation.decisions_settings import load_decision_settings as load_decision_settings
from jingzhun.activation.delivery import DeliveryAdapter as DeliveryAdapter
from jingzhun.activation.delivery import Outcome as Outcome
from jingzhun.activation.delivery import Outgoing as Outgoing
from jingzhun.activation.delivery import build_adapters as build_adapters
from jingzhun.activation.delivery import load_delivery_config as load_delivery_config
from jingzhun.activation.journeys import JourneyDefinition as JourneyDefinition
from jingzhun.activation.journeys import JourneyError as JourneyError
from jingzhun.activation.journeys import parse_journey as parse_journey
from jingzhun.activation.journeys import read_journey_file as read_journey_file
from jingzhun.activation.journeys_run import JourneyRun as JourneyRun
from jingzhun.activation.journeys_run import JourneyStatus as JourneyStatus
from jingzhun.activation.journeys_run import journey_paths as journey_paths
from jingzhun.activation.journeys_run import journey_status as journey_status
from jingzhun.activation.journeys_run import list_journeys as list_journeys
from jingzhun.activation.journeys_run import load_journey as load_journey
from jingzhun.activation.journeys_run import run_journey as run_journey
from jingzhun.activation.journeys_run import run_journeys as run_journeys
from jingzhun.activation.journeys_run import save_journey as save_journey
from jingzhun.activation.journeys_run import set_journey_status as set_journey_status
from jingzhun.activation.leads import LeadAssignment as LeadAssignment
from jingzhun.activation.leads import LeadError as LeadError
from jingzhun.activation.leads import LeadScoring as LeadScoring
from jingzhun.activation.leads import assign_leads as assign_leads
from jingzhun.activation.leads import leads_sql as leads_sql
from jingzhun.activation.leads import list_leads as list_leads
from jingzhun.activation.leads import record_lead_outcome as record_lead_outcome
from jingzhun.activation.leads import require_rep as require_rep
from jingzhun.activation.leads import score_leads as score_leads
from jingzhun.activation.leads_settings import SalesSettings as SalesSettings
from jingzhun.activation.leads_settings import install_example_sales as install_example_sales
from jingzhun.activation.leads_settings import load_sales_settings as load_sales_settings
from jingzhun.activation.policy import SendPolicy as SendPolicy
from jingzhun.activation.policy import SendRequest as SendRequest
from jingzhun.activation.policy import load_send_policy as load_send_policy
from jingzhun.activation.policy import policy_sql as policy_sql
from jingzhun.activation.recommend import RecommenderEvaluation as RecommenderEvaluation
from jingzhun.activation.recommend import RecommendError as RecommendError
from jingzhun.activation.recommend import RecommendResult as RecommendResult
from jingzhun.activation.recommend import compute_recommendations as compute_recommendations
from jingzhun.activation.recommend import evaluate_recommender as evaluate_recommender
from jingzhun.activation.recommend import run_recommend as run_recommend
from jingzhun.activation.recommend_serving import PersonRecommendations as PersonRecommendations
from jingzhun.activation.recommend_serving import RelatedProducts as RelatedProducts
from jingzhun.activation.recommend_serving import recommend_for as recommend_for
from jingzhun.activation.recommend_serving import related_products as related_products
from jingzhun.activation.recommend_settings import RecommendSettings as RecommendSettings
from jingzhun.activation.recommend_settings import (
    load_recommend_settings as load_recommend_settings,
)
from jingzhun.activation.send_time import SendTimes as SendTimes
from jingzhun.activation.send_time import best_send_hours as best_send_hours
from jingzhun.activation.sending import RunReport as RunReport
from jingzhun.activation.sending import check_template as check_template
from jingzhun.activation.sending import run_campaign as run_campaign
from jingzhun.activation.sending import run_campaigns as run_campaigns
from jingzhun.activation.tracking import rebuild_message_events as rebuild_message_events
from jingzhun.activation.tracking import record_message_events as record_message_events
from jingzhun.activation.triggers import DueRun as DueRun
from jingzhun.activation.triggers import TriggerReport as TriggerReport
from jingzhun.activation.triggers import check_trigger as check_trigger
from jingzhun.activation.triggers import fire_triggers as fire_triggers
from jingzhun.activation.triggers import on_events_loaded as on_events_loaded
from jingzhun.activation.triggers import run_due as run_due
from jingzhun.activation.triggers import send_due as send_due
