"""`definitions/sales.yaml`: the sales team (reps, quotas, territories) and how leads are scored.

Scoring works without the file (the defaults below); handing leads out needs the reps.
Example::

    territories:
      north: {name: {zh: 华北, en: North}, cities: [北京市, 天津市, 石家庄市]}
      east: {cities: [上海市, 杭州市, 南京市, 苏州市]}
    reps:
      - {id: zhang_wei, name: 张伟, territories: [north], quota: 5}            # 5 a day
      - {id: wang_fang, name: 王芳, territories: [east, other], quota: 20, period: week}
      - {id: li_na, name: 李娜, territories: ["*"], quota: 3}                 # any territory
    scoring:
      fresh_days: 3          # activity in the last 3 days counts in full …
      half_life_days: 3      # … and then its weight halves every 3 days

A lead's territory is the one whose `cities` hold the lead's city; a city no territory
lists is in `other`. A rep takes leads of the territories they list (`*`: all).
Every scoring number is part of the model version (`ScoringSettings.fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.profiles.tags import read_yaml

SALES_FILE = "sales.yaml"
EXAMPLE_FILE = Path(__file__).with_name("leads_example.yaml")
SALES_DOC = ConfigFile(f" in {SALES_FILE}", f"{SALES_FILE} 中", "docs/leads.md")
OTHER = "other"  # the territory of a city no territory lists
ANY = "*"


class SalesFileProblem(ValueError):
    """A check across keys of sales.yaml, said in both languages (pydantic keeps it in the error's ctx)."""

    def __init__(self, key: str, message: str, fix: str, message_zh: str, fix_zh: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message, self.fix, self.message_zh, self.fix_zh = key, message, fix, message_zh, fix_zh

    def config_error(self, location: Path | str) -> ConfigError:
        return ConfigError(f"{self.message.rstrip('.')} (`{self.key}` in {SALES_FILE}).", fix=self.fix,
                           field=self.key, location=location,
                           message_zh=f"{SALES_FILE} 中 `{self.key}`：{self.message_zh}", fix_zh=self.fix_zh)


# What to write instead, per key (the last part of its path), for errors pydantic words.
FIXES: dict[str, tuple[str, str]] = {
    "quota": ("give a whole number of new leads per period, from 0 (none) to 10000",
              "填写每个周期的新线索数：0（不分配）到 10000 的整数"),
    "period": ("use `day` or `week`", "请使用 `day`（每天）或 `week`（每周）"),
    "id": ("use letters, digits, `_`, `.` or `-` (at most 64)", "请使用字母、数字、`_`、`.` 或 `-`（最多 64 个）"),
    "territories": ("list at least one territory (or `*` for all)", "至少列出一个区域（`*` 表示全部）"),
    "cities": ("list at least one city, as the leads spell it (e.g. 上海市)", "至少列出一个城市，写法与线索一致（如 上海市）"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Territory(_Strict):
    """A sales territory: the cities whose leads belong to it."""

    name: Label | None = None
    cities: tuple[str, ...] = Field(min_length=1)


class Rep(_Strict):
    """A sales rep: who, where, and how many new leads per day or week."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str | None = None
    territories: tuple[str, ...] = Field(min_length=1)
    quota: int = Field(ge=0, le=10_000, description="New leads per period.")
    period: Literal["day", "week"] = "day"
    active: bool = True


class ScoringSettings(_Strict):
    """How a lead is scored: freshness decay, the intent window, the outcome window, the split."""

    fresh_days: float = Field(3, ge=0, le=60, description="Activity this recent counts in full.")
    half_life_days: float = Field(3, gt=0, le=180, description="After fresh_days, the weight halves this often.")
    intent_days: int = Field(14, ge=1, le=365, description="Views and livestream visits counted before scoring.")
    review_days: int = Field(14, ge=0, le=365,
                             description="A past lead was scored this many days after it was created.")
    outcome_days: int = Field(30, ge=1, le=365,
                              description="A lead not won within review_days + outcome_days counts as lost.")
    test_share: float = Field(0.25, gt=0, lt=0.9, description="Newest share of decided leads kept for the test.")
    min_training_leads: int = Field(100, ge=20, description="Fewer decided leads than this: no model.")
    regularization: float = Field(1.0, gt=0, description="Inverse L2 strength (sklearn's C).")
    no_answer_decay: float = Field(0.7, gt=0, le=1,
                                   description="Assignment priority x this per unanswered call (score unchanged).")
    no_answer_cooldown_hours: float = Field(24, ge=0, le=24 * 60,
                                            description="An unanswered lead waits this long before reassignment.")

    def fingerprint(self) -> dict[str, object]:
        return self.model_dump(mode="json")


class SalesSettings(_Strict):
    """The whole file."""

    territories: dict[str, Territory] = Field(default_factory=dict)
    reps: tuple[Rep, ...] = ()
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)

    @model_validator(mode="after")
    def _consistent(self) -> SalesSettings:
        known = set(self.territories) | {OTHER, ANY}
        ids: set[str] = set()
        for index, rep in enumerate(self.reps):
            if rep.id in ids:
                raise SalesFileProblem(
                    f"reps.{index}.id", f"rep {rep.id!r} is listed twice.", "give each rep one entry",
                    f"销售 {rep.id!r} 出现了两次。", "每位销售只写一条")
            ids.add(rep.id)
            unknown = [name for name in rep.territories if name not in known]
            if unknown:
                choices = ", ".join(sorted(known))
                raise SalesFileProblem(
                    f"reps.{index}.territories", f"rep {rep.id!r} names territory {unknown[0]!r}, which is not defined.",
                    f"use one of: {choices}; or add `{unknown[0]}:` with its cities under territories",
                    f"销售 {rep.id!r} 的区域 {unknown[0]!r} 未定义。",
                    f"请使用：{choices}；或在 territories 下添加 `{unknown[0]}:` 及其城市")
        seen: dict[str, str] = {}
        for name, territory in self.territories.items():
            for city in territory.cities:
                if city in seen:
                    raise SalesFileProblem(
                        f"territories.{name}.cities", f"city {city!r} is already in territory {seen[city]!r}.",
                        "list each city in one territory only", f"城市 {city!r} 已属于区域 {seen[city]!r}。",
                        "每个城市只能属于一个区域")
                seen[city] = name
        return self

    def city_territories(self) -> list[tuple[str, str]]:
        """(city, territory) for every listed city."""
        return [(city, name) for name, territory in self.territories.items() for city in territory.cities]

    def rep_territories(self) -> list[tuple[str, str]]:
        """(rep_id, territory) for every active rep; `*` expands to every territory and `other`."""
        every = [*self.territories, OTHER]
        pairs = []
        for rep in self.reps:
            if rep.active:
                names = every if ANY in rep.territories else list(rep.territories)
                pairs.extend((rep.id, name) for name in dict.fromkeys(names))
        return pairs

    def rep(self, rep_id: str) -> Rep | None:
        return next((rep for rep in self.reps if rep.id == rep_id), None)


def install_example_sales(workspace_root: Path, *, overwrite: bool = False) -> Path | None:
    """Write the example team (leads_example.yaml: four territories, five reps) as
    definitions/sales.yaml, unless the file exists; the path written, or None."""
    target = Path(workspace_root) / "definitions" / SALES_FILE
    if target.exists() and not overwrite:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_FILE, target)
    return target


def load_sales_settings(workspace: Workspace) -> SalesSettings:
    """The workspace's sales.yaml; the defaults (no reps, default scoring) when it is absent."""
    path = workspace.definitions_dir / SALES_FILE
    if not path.is_file():
        return SalesSettings()
    return parse_sales_settings(read_yaml(path, ConfigError), path)


def parse_sales_settings(data: object, location: Path | str = SALES_FILE) -> SalesSettings:
    try:
        return SalesSettings.model_validate(data or {})
    except ValidationError as invalid:
        first = invalid.errors()[0]
        problem = first.get("ctx", {}).get("error")
        if isinstance(problem, SalesFileProblem):
            raise problem.config_error(location) from None
        key = ".".join(str(part) for part in first["loc"])
        last = str(first["loc"][-1]) if first["loc"] else ""
        fixes = {key: FIXES[last]} if last in FIXES else None
        raise config_error(first, location, SalesSettings, SALES_DOC, fixes) from None


def scoring_version(settings: ScoringSettings, data: dict[str, object]) -> str:
    """`leads-<12 hex>`: the settings and what the model was trained on, hashed."""
    text = json.dumps({"settings": settings.fingerprint(), "data": data}, sort_keys=True, default=str)
    return "leads-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
