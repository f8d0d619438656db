"""Tracking plans: which events a source may send, with required properties and types.

Plans are YAML files in the workspace's `definitions/tracking_plans/`::

    name: web-shop
    sources: [web]            # source names or ids; empty means every source
    on_violation: flag        # flag (keep, record in context._violations) | quarantine
    allow_unplanned_events: true
    events:
      Order Completed:
        properties:
          order_id: {type: string, required: true}
          revenue: {type: number, required: true}

A plan is a contract between marketers and developers: a renamed event or a price
sent as text breaks reports silently, so the collector says so per message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jingzhun.collect.collector.write_keys import CollectorError

PropertyType = Literal["string", "number", "integer", "boolean", "object", "array", "any"]
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "object": (dict,), "array": (list,), "any": (object,),
}


class PropertyRule(BaseModel):
    """One property of a planned event."""

    model_config = ConfigDict(extra="forbid")
    type: PropertyType = "any"
    required: bool = False


class EventRule(BaseModel):
    """One planned event and its properties."""

    model_config = ConfigDict(extra="forbid")
    properties: dict[str, PropertyRule] = Field(default_factory=dict)


class TrackingPlan(BaseModel):
    """A tracking plan file, validated."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sources: list[str] = Field(default_factory=list)
    on_violation: Literal["flag", "quarantine"] = "flag"
    allow_unplanned_events: bool = True
    events: dict[str, EventRule] = Field(default_factory=dict)

    def applies_to(self, source_id: str, source_name: str) -> bool:
        return not self.sources or source_id in self.sources or source_name in self.sources

    def violations(self, message: dict) -> list[dict[str, str]]:
        """What is wrong with a track message under this plan (empty if nothing)."""
        if message.get("type") != "track":
            return []
        event = message.get("event")
        rule = self.events.get(event)
        if rule is None:
            if self.allow_unplanned_events:
                return []
            return [_violation("unplanned_event", "event", f"event {event!r} is not in plan {self.name!r}")]
        properties = message.get("properties") or {}
        found = []
        for name, prop in rule.properties.items():
            found.extend(_check_property(name, prop, properties))
        return found


def _check_property(name: str, rule: PropertyRule, properties: dict) -> list[dict[str, str]]:
    field = f"properties.{name}"
    if name not in properties or properties[name] is None:
        return [_violation("missing_property", field, f"required property {name!r} is missing")] if rule.required else []
    value = properties[name]
    wrong_bool = isinstance(value, bool) and rule.type in ("number", "integer")
    if wrong_bool or not isinstance(value, _PYTHON_TYPES[rule.type]):
        return [_violation("wrong_type", field,
                           f"property {name!r} should be {rule.type}, got {type(value).__name__}")]
    return []


def _violation(code: str, field: str, reason: str) -> dict[str, str]:
    return {"code": code, "field": field, "reason": reason}


def load_tracking_plans(definitions_dir: Path) -> list[TrackingPlan]:
    """Every plan in `definitions/tracking_plans/`; all errors reported at once."""
    folder = Path(definitions_dir) / "tracking_plans"
    plans, problems = [], []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            plans.append(TrackingPlan.model_validate(yaml.safe_load(path.read_text("utf-8")) or {}))
        except ValidationError as failure:
            problems.extend(f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in failure.errors())
        except yaml.YAMLError as failure:
            problems.append(f"{path}: not valid YAML ({failure})")
    if problems:
        raise CollectorError(
            "invalid tracking plan:\n" + "\n".join(problems), field="tracking_plans",
            location=folder, fix="fix the fields named above (see docs/collector.md)",
            message_zh="跟踪计划无效：\n" + "\n".join(problems), fix_zh="按上面指出的字段修改（见 docs/collector.md）",
        )
    return plans


class PlanChecker:
    """Applies every plan that covers a message's source."""

    def __init__(self, plans: list[TrackingPlan]) -> None:
        self.plans = plans

    def check(self, message: dict, source_id: str, source_name: str) -> tuple[str | None, list[dict[str, str]]]:
        """(`quarantine` | `flag` | None, violations) for one message."""
        action, found = None, []
        for plan in self.plans:
            if not plan.applies_to(source_id, source_name):
                continue
            violations = plan.violations(message)
            if violations:
                found.extend({**v, "plan": plan.name} for v in violations)
                action = "quarantine" if plan.on_violation == "quarantine" or action == "quarantine" else "flag"
        return action, found
