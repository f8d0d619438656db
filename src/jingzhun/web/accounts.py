"""Who may use the server: users with roles, their sessions, API keys, and the audit log.

Functions of an engine, like every stage's: `jingzhun user …` / `jingzhun apikey …` call
them on their own engine, the server calls them in its engine process. Every change
writes an `audit_log` row (who, what, which object, when) in the same transaction.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import pyarrow as pa
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine
from jingzhun.schema.tables import API_KEYS, AUDIT_LOG, USERS, WEB_SESSIONS
from jingzhun.web import security

ROLES = ("admin", "marketer", "analyst", "viewer")
USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,62}$")
_TS = pa.timestamp("us", tz="UTC")
LAST_USED_EVERY = timedelta(minutes=10)  # how stale api_keys.last_used_at may get (one write per key per 10 min)


class AccountError(JingzhunError):
    """A request about users, sessions or API keys is invalid."""


class AccountNotFound(AccountError):
    """No such user or API key."""


class AccountConflict(AccountError):
    """The user name is taken."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a logged-in user (with the session's CSRF token) or an API key."""

    kind: Literal["user", "api_key"]
    id: str
    name: str
    role: str
    csrf_token: str | None = None
    session_hash: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"user:{self.name}" if self.kind == "user" else f"api_key:{self.id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _eq(column: str, value: object) -> exp.Expression:
    return exp.column(column).eq(exp.convert(value))


def _one(engine: Engine, query: exp.Select) -> dict[str, Any] | None:
    rows = engine.query(query.limit(1)).to_pylist()
    return rows[0] if rows else None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}.", field="role", fix=f"use one of {', '.join(ROLES)}",
                           message_zh=f"未知角色 {role!r}。", fix_zh=f"请使用 {'、'.join(ROLES)} 之一")
    return role


def check_password(password: str) -> str:
    if len(password) < security.MIN_PASSWORD_CHARS or len(set(password)) < 4:
        raise AccountError(
            f"the password is too weak: use at least {security.MIN_PASSWORD_CHARS} characters, not one repeated.",
            field="password", fix="choose a longer password (a passphrase works well)",
            message_zh=f"密码太弱：至少 {security.MIN_PASSWORD_CHARS} 个字符，且不能只重复一个字符。",
            fix_zh="请换一个更长的密码（短语也可以）")
    return password


def record_audit(engine: Engine, actor: str, action: str, object_type: str | None = None,
                 object_id: str | None = None, details: dict[str, Any] | None = None) -> str:
    """Append one `audit_log` row; returns its id."""
    audit_id = uuid.uuid4().hex
    engine.write_table(AUDIT_LOG.name, pa.table({
        "audit_id": [audit_id], "occurred_at": pa.array([_now()], _TS), "actor": [actor], "action": [action],
        "object_type": [object_type], "object_id": [object_id],
        "details": [orjson.dumps(details, default=str).decode() if details is not None else None]}))
    return audit_id


def audit_entries(engine: Engine, *, limit: int = 50, offset: int = 0, actor: str | None = None,
                  object_type: str | None = None, action: str | None = None) -> tuple[pa.Table, int]:
    """Audit rows, newest first, and how many match in all."""
    query = exp.select("*").from_(AUDIT_LOG.name)
    for column, value in (("actor", actor), ("object_type", object_type), ("action", action)):
        if value is not None:
            query = query.where(_eq(column, value))
    total = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(query.subquery("a")))
    rows = engine.query(query.order_by(exp.column("occurred_at").desc(), "audit_id").limit(limit).offset(offset))
    return rows, int(total.column("n")[0].as_py())


# ---- users -------------------------------------------------------------------------------------


def find_user(engine: Engine, username: str) -> dict[str, Any] | None:
    """The user's row (with its password hash: never return it to a caller)."""
    return _one(engine, exp.select("*").from_(USERS.name).where(_eq("username", username)))


def _require_user(engine: Engine, username: str) -> dict[str, Any]:
    user = find_user(engine, username)
    if user is None:
        raise AccountNotFound(f"no user named {username!r}.", field="username", fix="list users with `jingzhun user list`",
                              message_zh=f"没有名为 {username!r} 的用户。", fix_zh="用 `jingzhun user list` 查看用户")
    return user


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """A user row as callers see it: no password hash."""
    return {key: user.get(key) for key in ("user_id", "username", "display_name", "role", "created_at",
                                           "disabled_at", "last_login_at")}


def create_user(engine: Engine, username: str, role: str, password: str, display_name: str | None = None,
                actor: str = "cli") -> dict[str, Any]:
    """Add a user; names are lower-case (letters, digits, `_.-`), passwords hashed with Argon2id."""
    if not USERNAME.match(username):
        raise AccountError(f"invalid user name {username!r}.", field="username",
                           fix="use 2-63 lower-case letters, digits, '_', '.' or '-', starting with a letter",
                           message_zh=f"无效的用户名 {username!r}。", fix_zh="请用 2-63 个小写字母、数字、_ . -，以字母开头")
    check_role(role)
    check_password(password)
    if find_user(engine, username) is not None:
        raise AccountConflict(f"a user named {username!r} exists.", field="username",
                              fix="choose another name, or change that user's password or role",
                              message_zh=f"已存在名为 {username!r} 的用户。", fix_zh="请换一个名称，或修改该用户的密码或角色")
    user = {"user_id": f"u_{uuid.uuid4().hex[:16]}", "username": username, "display_name": display_name or username,
            "role": role, "password_hash": security.hash_password(password), "created_at": _now(),
            "disabled_at": None, "last_login_at": None}
    with engine.transaction():
        engine.write_table(USERS.name, pa.Table.from_pylist([user], schema=_users_schema()))
        record_audit(engine, actor, "user.create", "user", username, {"role": role})
    return public_user(user)


def _users_schema() -> pa.Schema:
    return pa.schema([("user_id", pa.string()), ("username", pa.string()), ("display_name", pa.string()),
                      ("role", pa.string()), ("password_hash", pa.string()), ("created_at", _TS),
                      ("disabled_at", _TS), ("last_login_at", _TS)])


def list_users(engine: Engine) -> pa.Table:
    """Every user, oldest first, without password hashes."""
    return engine.query(exp.select("user_id", "username", "display_name", "role", "created_at", "disabled_at",
                                   "last_login_at").from_(USERS.name).order_by("created_at", "username"))


def _update(engine: Engine, table: str, key: str, value: str, changes: dict[str, object]) -> None:
    engine.execute(exp.update(table, {name: exp.convert(v) if v is not None else exp.null()
                                      for name, v in changes.items()}, where=_eq(key, value)))


def set_password(engine: Engine, username: str, password: str, actor: str = "cli") -> None:
    """Change a user's password; their open sessions end."""
    user = _require_user(engine, username)
    check_password(password)
    with engine.transaction():
        _update(engine, USERS.name, "username", username, {"password_hash": security.hash_password(password)})
        revoke_user_sessions(engine, user["user_id"])
        record_audit(engine, actor, "user.password", "user", username)


def update_user(engine: Engine, username: str, *, role: str | None = None, display_name: str | None = None,
                disabled: bool | None = None, actor: str = "cli") -> dict[str, Any]:
    """Change a user's role, name or whether they may log in; disabling ends their sessions."""
    user = _require_user(engine, username)
    changes: dict[str, object] = {}
    if role is not None:
        changes["role"] = check_role(role)
    if display_name is not None:
        changes["display_name"] = display_name
    if disabled is not None:
        changes["disabled_at"] = (user["disabled_at"] or _now()) if disabled else None
    if changes:
        with engine.transaction():
            _update(engine, USERS.name, "username", username, changes)
            if disabled or role is not None:
                revoke_user_sessions(engine, user["user_id"])
            record_audit(engine, actor, "user.update", "user", username,
                         {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()})
    return public_user({**user, **changes})


def authenticate(engine: Engine, username: str, password: str) -> dict[str, Any] | None:
    """The enabled user with this password, or None (the same work is done either way)."""
    user = find_user(engine, username.strip().lower())
    if not security.verify_password(user["password_hash"] if user else None, password) or user is None:
        return None
    if user["disabled_at"] is not None:
        return None
    changes: dict[str, object] = {"last_login_at": _now()}
    if security.needs_rehash(user["password_hash"]):
        changes["password_hash"] = security.hash_password(password)
    _update(engine, USERS.name, "user_id", user["user_id"], changes)
    return user


# ---- sessions ----------------------------------------------------------------------------------


def open_session(engine: Engine, user: dict[str, Any], hours: int, ip: str | None = None,
                 user_agent: str | None = None) -> tuple[str, Principal]:
    """Start a console session: the token for the cookie (stored only hashed) and who it is."""
    token, csrf = security.new_token(), security.new_token()
    now = _now()
    engine.write_table(WEB_SESSIONS.name, pa.table({
        "session_hash": [security.token_hash(token)], "user_id": [user["user_id"]], "csrf_token": [csrf],
        "created_at": pa.array([now], _TS), "expires_at": pa.array([now + timedelta(hours=hours)], _TS),
        "revoked_at": pa.array([None], _TS), "ip": [ip], "user_agent": [(user_agent or "")[:300]]}))
    record_audit(engine, f"user:{user['username']}", "auth.login", "user", user["username"], {"ip": ip})
    return token, Principal("user", user["user_id"], user["username"], user["role"], csrf, security.token_hash(token))


def session_principal(engine: Engine, token: str) -> Principal | None:
    """Who holds this session token, if the session is open and its user enabled."""
    row = _one(engine, exp.select("s.session_hash", "s.csrf_token", "u.user_id", "u.username", "u.role")
               .from_(f"{WEB_SESSIONS.name} AS s").join(f"{USERS.name} AS u", on="u.user_id = s.user_id")
               .where(exp.column("session_hash", "s").eq(exp.convert(security.token_hash(token))))
               .where("s.revoked_at IS NULL AND u.disabled_at IS NULL")
               .where(exp.column("expires_at", "s") > exp.cast(exp.convert(_now().isoformat()), "TIMESTAMPTZ")))
    if row is None:
        return None
    return Principal("user", row["user_id"], row["username"], row["role"], row["csrf_token"], row["session_hash"])


def close_session(engine: Engine, principal: Principal) -> None:
    """Log out: the session's cookie stops working."""
    if principal.session_hash:
        _update(engine, WEB_SESSIONS.name, "session_hash", principal.session_hash, {"revoked_at": _now()})
        record_audit(engine, principal.actor, "auth.logout", "user", principal.name)


def revoke_user_sessions(engine: Engine, user_id: str) -> None:
    engine.execute(exp.update(WEB_SESSIONS.name, {"revoked_at": exp.convert(_now())},
                              where=exp.and_(_eq("user_id", user_id), exp.column("revoked_at").is_(exp.null()))))


# ---- API keys ----------------------------------------------------------------------------------


def create_api_key(engine: Engine, name: str, role: str, actor: str = "cli") -> tuple[dict[str, Any], str]:
    """A new API key for a machine, acting with `role`: its row and the secret, shown only now."""
    check_role(role)
    if not name.strip():
        raise AccountError("the API key needs a name.", field="name", fix="name it after the machine that uses it",
                           message_zh="API 密钥需要名称。", fix_zh="请用调用它的系统来命名")
    secret = security.new_token(security.API_KEY_PREFIX)
    row = {"key_id": f"k_{uuid.uuid4().hex[:16]}", "name": name.strip(), "key_hash": security.token_hash(secret),
           "role": role, "created_at": _now(), "revoked_at": None, "last_used_at": None, "created_by": actor,
           "key_prefix": secret[:8]}
    with engine.transaction():
        engine.write_table(API_KEYS.name, pa.Table.from_pylist([row], schema=pa.schema([
            (key, _TS if key.endswith("_at") else pa.string()) for key in row])))
        record_audit(engine, actor, "api_key.create", "api_key", row["key_id"], {"name": row["name"], "role": role})
    return {key: value for key, value in row.items() if key != "key_hash"}, secret


def list_api_keys(engine: Engine) -> pa.Table:
    """Every API key (never the secret or its hash), newest first."""
    return engine.query(exp.select("key_id", "name", "key_prefix", "role", "created_at", "created_by", "last_used_at",
                                   "revoked_at").from_(API_KEYS.name).order_by(exp.column("created_at").desc()))


def revoke_api_key(engine: Engine, key_id: str, actor: str = "cli") -> None:
    """The key stops working at once; its row stays for the record."""
    row = _one(engine, exp.select("key_id", "revoked_at").from_(API_KEYS.name).where(_eq("key_id", key_id)))
    if row is None:
        raise AccountNotFound(f"no API key {key_id!r}.", field="key_id", fix="list keys with `jingzhun apikey list`",
                              message_zh=f"没有 API 密钥 {key_id!r}。", fix_zh="用 `jingzhun apikey list` 查看密钥")
    if row["revoked_at"] is None:
        with engine.transaction():
            _update(engine, API_KEYS.name, "key_id", key_id, {"revoked_at": _now()})
            record_audit(engine, actor, "api_key.revoke", "api_key", key_id)


def api_key_principal(engine: Engine, secret: str) -> Principal | None:
    """Who an API key acts as, if it exists and is not revoked (notes when it was last used)."""
    row = _one(engine, exp.select("key_id", "name", "role", "last_used_at").from_(API_KEYS.name)
               .where(_eq("key_hash", security.token_hash(secret))).where("revoked_at IS NULL"))
    if row is None:
        return None
    now = _now()
    if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_EVERY:
        _update(engine, API_KEYS.name, "key_id", row["key_id"], {"last_used_at": now})
    return Principal("api_key", row["key_id"], row["name"], row["role"])
