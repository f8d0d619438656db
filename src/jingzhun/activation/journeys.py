"""Journeys: multi-step paths a person walks after they enter (definitions and their checks).

A journey is YAML: how persons enter (an event, entry into a real-time audience, or the
members of an audience's snapshot), an optional goal event that takes anyone out at once
(`exit_on`), a random holdout at entry, and a list of steps, each one of

- `wait_for: {event, timeout, on_timeout}` — go on when the person does `event`, or to
  `on_timeout` after `timeout`;
- `delay: 2d` — wait a while; `delay_until: "10:00"` — wait for a local time of day;
- `split: [{when: RULE, goto: STEP}, …]` with `else: STEP` — the first rule (the rule
  language of tags and audiences, docs/tags.md) the person matches now;
- `random: [{percent: 50, goto: STEP}, …]` — a fixed random share (hash of journey, step
  and person, so a rerun sends nobody down the other branch);
- `message: {template, channels, send_time}` — a message through the campaign send path
  (the send policy, the adapters, the delivery states);
- `exit: true` — leave the journey.

A step goes on to its `next` (default: the step below it; after the last one the person
is done). Everything is checked before a journey is stored, and every problem is reported
at once with its step path and the fix (`steps[2] (remind).message.template: …`): unknown
keys and targets, steps no one can reach, loops without a wait (a person would spin in
them), unknown templates or templates without copy for a channel, rules naming unknown
traits, unknown audiences. Running journeys is activation.journeys_run.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from jingzhun.activation.campaigns import Span
from jingzhun.activation.policy import Channel, Purpose
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.profiles.rules import Problem, RuleError, parse_rule
from jingzhun.profiles.tags import read_yaml

ID_PATTERN = r"^[a-z][a-z0-9_]{1,40}$"
STEP_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
STEP_KINDS = ("wait_for", "delay", "delay_until", "split", "random", "message", "exit")
WAITING_KINDS = ("wait_for", "delay", "delay_until")  # a loop needs one of these
END = "end"  # the path's marker for "left the journey" (journey_transitions.to_step); not a step id
DOC = "docs/journeys.md"


class JourneyError(RuleError):
    """A journey definition is invalid; `problems` lists every finding with its step path
    (the same shape as a rule's problems, which a split's rules add to)."""


def _invalid(en: str, zh: str, fix: str, fix_zh: str) -> PydanticCustomError:
    return PydanticCustomError("jingzhun_journey", "{en}", {"en": en, "zh": zh, "fix": fix, "fix_zh": fix_zh})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class JourneyEntry(_Strict):
    """Who enters: persons doing `event`, entering the real-time audience `segment_entered`,
    or the members of audience `segment`'s latest snapshot — from `since` (default: when
    the journey was first saved). `reentry: true` lets a person who finished enter again."""

    event: str | None = Field(None, min_length=1)
    segment_entered: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{1,62}$")
    segment: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{1,62}$")
    reentry: bool = False
    since: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> JourneyEntry:
        given = [k for k in ("event", "segment_entered", "segment") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _invalid("entry needs exactly one of event, segment_entered or segment.",
                           "entry 必须且只能填写 event、segment_entered、segment 之一。",
                           "e.g. entry: {event: Cart Abandoned}", "例如 entry: {event: Cart Abandoned}")
        if self.segment is not None and self.reentry:
            raise _invalid("an audience snapshot cannot re-enter its members (they would loop for ever).",
                           "人群快照入口不能重复进入（成员会无限循环）。", "remove reentry, or enter by an event",
                           "删除 reentry，或改用事件入口")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("event", "segment_entered", "segment") if getattr(self, k) is not None)


class ExitOn(_Strict):
    """The goal: a person who does `event` after entering leaves at once, wherever they are."""

    event: str = Field(min_length=1)


class WaitFor(_Strict):
    event: str = Field(min_length=1)
    timeout: Span
    on_timeout: str | None = None  # the step after the timeout; default: the same as after the event

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise _invalid("timeout must be longer than 0.", "timeout 必须大于 0。", "e.g. timeout: 2d",
                           "例如 timeout: 2d")
        return value


class MessageSpec(_Strict):
    template: str = Field(min_length=1)
    channels: tuple[Channel, ...] | None = None  # default: the journey's channels
    send_time: Literal["now", "optimal"] = "now"
    language: Literal["zh", "en"] | None = None
    coupon: dict[str, Any] | None = None


class Branch(_Strict):
    when: dict[str, Any]
    goto: str


class RandomBranch(_Strict):
    percent: float = Field(gt=0, le=100)
    goto: str


class Step(_Strict):
    """One step: `id` and exactly one of the kinds, with `next` where the kind goes on."""

    id: str = Field(pattern=STEP_PATTERN)
    wait_for: WaitFor | None = None
    delay: Span | None = None
    delay_until: time | None = None
    split: tuple[Branch, ...] | None = Field(None, min_length=1)
    else_: str | None = Field(None, alias="else")
    random: tuple[RandomBranch, ...] | None = Field(None, min_length=1)
    message: MessageSpec | None = None
    exit: Literal[True] | None = None
    next: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise _invalid(f"a step needs exactly one of {', '.join(STEP_KINDS)} (found {kinds or 'none'}).",
                           f"每一步必须且只能包含 {'、'.join(STEP_KINDS)} 之一（实际：{kinds or '无'}）。",
                           "split this step in two, or add its kind", "把这一步拆成两步，或补上步骤类型")
        if self.else_ is not None and self.split is None:
            raise _invalid("`else` belongs to a split.", "`else` 只能用于 split。", "remove it", "删除它")
        if self.next is not None and self.kind in ("split", "random", "exit"):
            raise _invalid(f"a {self.kind} step has no `next` (its branches say where to go).",
                           f"{self.kind} 步骤没有 `next`（由分支决定去向）。", "remove next", "删除 next")
        if self.delay is not None and self.delay <= timedelta(0):
            raise _invalid("delay must be longer than 0.", "delay 必须大于 0。", "e.g. delay: 1d", "例如 delay: 1d")
        if self.random is not None and abs(sum(b.percent for b in self.random) - 100) > 1e-6:
            raise _invalid(f"the percentages add up to {sum(b.percent for b in self.random):g}, not 100.",
                           f"百分比之和为 {sum(b.percent for b in self.random):g}，不是 100。",
                           "make them add up to 100", "让各分支百分比之和为 100")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class JourneyDefinition(_Strict):
    """A journey as written in YAML/JSON."""

    journey_id: str = Field(pattern=ID_PATTERN)
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    purpose: Purpose = "marketing"
    entry: JourneyEntry
    exit_on: ExitOn | None = None
    channels: tuple[Channel, ...] = ()  # default channels of message steps, in order of preference
    language: Literal["zh", "en"] | None = None
    holdout: float = Field(0.0, ge=0.0, le=0.9)
    quiet_hours: Literal["defer", "drop"] = "defer"
    sensitive_data: bool = False
    track_links: bool = True
    steps: tuple[Step, ...] = Field(min_length=1)

    def canonical_json(self) -> str:
        """The definition as stored; any change makes a new version."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def channels_of(self, step: Step) -> tuple[str, ...]:
        return tuple(step.message.channels or self.channels) if step.message else ()


# ---- the graph ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """Where a step can send a person: the target step (None: the journey's end) and why."""

    target: str | None
    label: str  # the key that names it: next | event | timeout | split[i].goto | random[i].goto | else


def following(definition: JourneyDefinition, index: int) -> str | None:
    """The step below steps[index], or None after the last one."""
    return definition.steps[index + 1].id if index + 1 < len(definition.steps) else None


def edges(definition: JourneyDefinition, index: int) -> list[Edge]:
    """The moves out of steps[index], with the default `next` (the step below) filled in."""
    step = definition.steps[index]
    onward = step.next or following(definition, index)
    if step.exit:
        return []
    if step.split is not None:
        return [*(Edge(b.goto, f"split[{i}].goto") for i, b in enumerate(step.split)),
                Edge(step.else_ or following(definition, index), "else")]
    if step.random is not None:
        return [Edge(b.goto, f"random[{i}].goto") for i, b in enumerate(step.random)]
    if step.wait_for is not None:
        return [Edge(onward, "event"), Edge(step.wait_for.on_timeout or onward, "timeout")]
    return [Edge(onward, "next")]


def _path(definition: JourneyDefinition, index: int) -> str:
    return f"steps[{index}] ({definition.steps[index].id})"


def graph_problems(definition: JourneyDefinition) -> list[Problem]:
    """Duplicate ids, unknown targets, unreachable steps and loops without a wait."""
    ids = [s.id for s in definition.steps]
    problems = [Problem(_path(definition, i), f"the id {s.id!r} is used twice.", f"步骤 ID {s.id!r} 重复。",
                        "give every step its own id", "每一步使用不同的 ID")
                for i, s in enumerate(definition.steps) if ids.index(s.id) != i or s.id == END]
    problems += [Problem(_path(definition, i), f"{END!r} is reserved for the end of the journey.",
                         f"{END!r} 保留用于表示旅程结束。", "rename the step", "为该步骤改名")
                 for i, s in enumerate(definition.steps) if s.id == END]
    for i in range(len(definition.steps)):
        for edge in edges(definition, i):
            if edge.target is not None and edge.target not in ids:
                close = difflib.get_close_matches(edge.target, ids, n=1)
                problems.append(Problem(
                    f"{_path(definition, i)}.{_target_key(definition.steps[i], edge)}",
                    f"no step has the id {edge.target!r}.", f"没有 ID 为 {edge.target!r} 的步骤。",
                    f"use {close[0]!r}" if close else f"use one of {', '.join(ids)}",
                    f"改为 {close[0]!r}" if close else f"改用 {'、'.join(ids)} 之一"))
    if problems:
        return problems
    return _unreachable(definition) + _spinning_loops(definition)


def _target_key(step: Step, edge: Edge) -> str:
    if step.wait_for is not None:
        return "wait_for.on_timeout" if edge.label == "timeout" and step.wait_for.on_timeout else "next"
    return edge.label


def _successors(definition: JourneyDefinition) -> dict[str, list[str]]:
    return {step.id: [e.target for e in edges(definition, i) if e.target is not None]
            for i, step in enumerate(definition.steps)}


def _unreachable(definition: JourneyDefinition) -> list[Problem]:
    after = _successors(definition)
    seen, todo = set(), [definition.steps[0].id]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(after[current])
    return [Problem(_path(definition, i), "no path from the first step leads here.", "从第一步出发无法到达此步骤。",
                    "point a next, goto or on_timeout at it, or remove it", "让某个 next、goto 或 on_timeout 指向它，或删除它")
            for i, step in enumerate(definition.steps) if step.id not in seen]


def _spinning_loops(definition: JourneyDefinition) -> list[Problem]:
    """Loops made only of instant steps (split, random, message, exit): a person would go
    round them for ever within one instant (and get a message each time)."""
    instant = {s.id for s in definition.steps if s.kind not in WAITING_KINDS}
    after = {k: [t for t in v if t in instant] for k, v in _successors(definition).items() if k in instant}
    state: dict[str, int] = {}
    problems: list[Problem] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in after[node]:
            if state.get(target) == 1:
                loop = " → ".join([*trail[trail.index(target):], target])
                index = [s.id for s in definition.steps].index(target)
                problems.append(Problem(
                    _path(definition, index), f"the loop {loop} has no wait: a person would go round it for ever.",
                    f"循环 {loop} 中没有等待步骤：用户会在其中无限循环。",
                    "put a delay, delay_until or wait_for into the loop", "在循环中加入 delay、delay_until 或 wait_for"))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for node in after:
        if node not in state:
            visit(node, [node])
    return problems


# ---- parsing ------------------------------------------------------------------------------------

_GENERIC = {
    "missing": ("this key is required.", "缺少此键。", "add it", "补上此键"),
    "string_pattern_mismatch": ("use lower-case letters, digits and _ (starting with a letter).",
                                "只能使用小写字母、数字和下划线，并以字母开头。", "rename it", "修改名称"),
}


_KEYS = sorted({name for model in (JourneyDefinition, JourneyEntry, ExitOn, WaitFor, MessageSpec, Branch,
                                     RandomBranch, Step) for name in model.model_fields} | {"else"})


def _loc_path(loc: tuple[int | str, ...], data: object) -> str:
    """('steps', 2, 'message', 'template') → 'steps[2] (remind).message.template'."""
    path, node = "", data
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                path += f" ({node['id']})"
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return path or "journey"


def _problem(item: dict[str, Any], data: object) -> Problem:
    loc = tuple(part for part in item["loc"] if part not in ("function-after[_one_kind(), Step]",))
    path = _loc_path(loc, data)
    ctx = item.get("ctx") or {}
    if item["type"] == "jingzhun_journey":
        return Problem(path, ctx["en"], ctx["zh"], ctx["fix"], ctx["fix_zh"])
    if item["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _KEYS, n=1)
        if close:
            return Problem(path, "unknown key.", "未知的键。", f"rename it to `{close[0]}`", f"改名为 `{close[0]}`")
        return Problem(path, "unknown key.", "未知的键。", f"remove it (see {DOC} for the keys)",
                       f"删除它（可用的键见 {DOC}）")
    if item["type"] in _GENERIC:
        return Problem(path, *_GENERIC[item["type"]])
    reason = str(item["msg"]).removeprefix("Value error, ")
    return Problem(path, reason, f"取值无效：{reason}", f"see {DOC} for the allowed values", f"允许的取值见 {DOC}")


def parse_journey(data: object, location: str | Path | None = None) -> JourneyDefinition:
    """A journey from YAML/JSON data, its shape and graph checked; every problem raised at once."""
    try:
        definition = JourneyDefinition.model_validate(data)
    except ValidationError as invalid:
        raise JourneyError([_problem(item, data) for item in invalid.errors()], location) from None
    problems = graph_problems(definition)
    problems += [problem for i, step in enumerate(definition.steps) for problem in _rule_problems(definition, i)]
    problems += [Problem(f"{_path(definition, i)}.message.channels", "the message has no channel.",
                         "消息没有发送渠道。", "add channels: [sms] to the step or to the journey",
                         "在此步骤或旅程上加入 channels: [sms]")
                 for i, step in enumerate(definition.steps) if step.message and not definition.channels_of(step)]
    if problems:
        raise JourneyError(problems, location)
    return definition


def _rule_problems(definition: JourneyDefinition, index: int) -> list[Problem]:
    step = definition.steps[index]
    problems = []
    for b, branch in enumerate(step.split or ()):
        try:
            parse_rule(branch.when, root=f"{_path(definition, index)}.split[{b}].when")
        except RuleError as bad:
            problems.extend(bad.problems)
    return problems


def read_journey_file(path: Path) -> JourneyDefinition:
    """A journey definition file (YAML or JSON)."""
    return parse_journey(read_yaml(path, ConfigError), path)


def check_journey(workspace: Workspace, definition: JourneyDefinition, catalog: Any = None,
                  audiences: dict[str, Any] | None = None) -> None:
    """What needs the workspace: templates that exist and have copy for each channel (and are
    not marketing copy in a transactional journey), split rules naming known traits, tags
    and audiences, entry audiences that exist (and are real-time for segment_entered)."""
    problems = [p for i, step in enumerate(definition.steps) if step.message
                for p in _template_problems(workspace, definition, i)]
    if catalog is not None:
        from jingzhun.profiles.rules import check_rule

        for i, step in enumerate(definition.steps):
            for b, branch in enumerate(step.split or ()):
                root = f"{_path(definition, i)}.split[{b}].when"
                problems += check_rule(parse_rule(branch.when, root=root), catalog, root)
    if audiences is not None:
        problems += _entry_problems(definition, audiences)
    if problems:
        raise JourneyError(problems)


def _template_problems(workspace: Workspace, definition: JourneyDefinition, index: int) -> list[Problem]:
    from jingzhun.activation.content_templates import list_templates

    step = definition.steps[index]
    assert step.message is not None
    known = {template.id: template for template in list_templates(workspace)}
    where = f"{_path(definition, index)}.message"
    template = known.get(step.message.template)
    if template is None:
        close = difflib.get_close_matches(step.message.template, list(known), n=1)
        return [Problem(f"{where}.template", f"unknown template {step.message.template!r}.",
                        f"未知模板 {step.message.template!r}。",
                        f"use {close[0]!r}" if close else f"use one of {', '.join(sorted(known)) or '—'} "
                        "(`jingzhun template list`)",
                        f"改为 {close[0]!r}" if close else f"改用 {'、'.join(sorted(known)) or '—'} 之一")]
    missing = [c for c in definition.channels_of(step) if c != "ads" and c not in template.channels]
    problems = [Problem(f"{where}.channels", f"template {template.id!r} has no copy for {', '.join(missing)}.",
                        f"模板 {template.id!r} 没有 {'、'.join(missing)} 渠道的文案。",
                        f"add channels.{missing[0]} to the template, or send on {', '.join(template.channels)}",
                        f"在模板中加入 channels.{missing[0]}，或改用 {'、'.join(template.channels)}")] if missing else []
    if template.purpose == "marketing" and definition.purpose == "transactional":
        problems.append(Problem(f"{where}.template", f"template {template.id!r} is marketing copy; a transactional "
                                "journey cannot send it.", f"模板 {template.id!r} 是营销文案，交易类旅程不能发送。",
                                "use purpose: marketing", "请使用 purpose: marketing"))
    return problems


def _entry_problems(definition: JourneyDefinition, audiences: dict[str, Any]) -> list[Problem]:
    entry = definition.entry
    wanted = entry.segment or entry.segment_entered
    if wanted is None:
        return []
    if wanted not in audiences:
        return [Problem(f"entry.{entry.kind}", f"unknown audience {wanted!r}.", f"未知人群 {wanted!r}。",
                        f"use one of {', '.join(sorted(audiences)) or '—'} (`jingzhun segment list`)",
                        f"改用 {'、'.join(sorted(audiences)) or '—'} 之一")]
    if entry.segment_entered and not audiences[wanted].realtime:
        return [Problem("entry.segment_entered", f"audience {wanted!r} is not real-time: nobody enters it as "
                        "events arrive.", f"人群 {wanted!r} 不是实时人群：不会随事件有人进入。",
                        "mark it realtime: true, or enter by its snapshot (entry: {segment: …})",
                        "将其设为 realtime: true，或改用快照入口（entry: {segment: …}）")]
    return []
