"""Secrets handling: password hashes, random tokens, signed cookies, log-in rate limits.

Passwords are hashed with Argon2id (argon2-cffi's defaults, re-hashed when they
change). Session tokens and API keys are long random tokens, so the database keeps
only their SHA-256: a leaked database leaks no credential, and there is nothing to
brute-force. Cookies carry the token signed with the workspace's session secret, so
a forged or truncated cookie is refused before any lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeSerializer

_HASHER = PasswordHasher()
SESSION_COOKIE = "jz_session"
LOGIN_CSRF_COOKIE = "jz_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
API_KEY_PREFIX = "jzk_"
MIN_PASSWORD_CHARS = 10


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a failed log-in takes the same time
    whether or not the name is known (no user enumeration by timing). Made on first use: a hash
    costs a noticeable fraction of a second, which every `jingzhun` command would pay at start."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An Argon2id hash of `password`."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (False for no hash, taking the same time)."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def new_token(prefix: str = "") -> str:
    """A random URL-safe token with 256 bits of entropy."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a session token or API key.

    Example:
        >>> token_hash("abc")[:12]
        'ba7816bf8f01'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def generated_password() -> str:
    """A password for a generated account (the demo admin): 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


class CookieSigner:
    """Signs the session cookie and the log-in form's double-submit cookie."""

    def __init__(self, secret: bytes) -> None:
        self._session = URLSafeSerializer(secret, salt="jingzhun.session")
        self._login = TimestampSigner(secret, salt="jingzhun.login-csrf")

    def session_cookie(self, token: str) -> str:
        return self._session.dumps(token)

    def session_token(self, cookie: str | None) -> str | None:
        """The token inside a session cookie, or None if it is missing or not ours."""
        if not cookie:
            return None
        try:
            token = self._session.loads(cookie)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    def login_csrf(self) -> tuple[str, str]:
        """A fresh log-in form token and the signed cookie that must come back with it."""
        token = secrets.token_urlsafe(24)
        return token, self._login.sign(token).decode("ascii")

    def login_csrf_valid(self, cookie: str | None, submitted: str | None, max_age: int = 3600) -> bool:
        """The form's token equals the one signed into its cookie, issued within `max_age` seconds."""
        if not cookie or not submitted:
            return False
        try:
            token = self._login.unsign(cookie, max_age=max_age).decode("ascii")
        except (BadSignature, SignatureExpired):
            return False
        return same(token, submitted)


class LoginLimiter:
    """Failed log-ins per (username, address) and per address in a sliding window.

    In memory, in the HTTP process: the server is one process, and forgetting the
    counts on restart costs an attacker a restart they cannot cause.
    """

    def __init__(self, attempts: int, window_seconds: float) -> None:
        self.attempts, self.window = attempts, window_seconds
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, username: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return (username.strip().lower(), address), ("", address)

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this pair may try again; 0 when it may now."""
        now = time.monotonic()
        limits = zip(self._keys(username, address), (self.attempts, self.attempts * 4), strict=True)
        with self._lock:
            waits = []
            for key, limit in limits:
                seen = self._failures.get(key)
                while seen and seen[0] <= now - self.window:
                    seen.popleft()
                if seen and len(seen) >= limit:
                    waits.append(int(seen[0] + self.window - now) + 1)
            return max(waits, default=0)

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in self._keys(username, address):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(username, address)[0], None)
