"""Identify: one person (OneID) behind every cookie, device, openid, phone and member id.

Public API (the CLI, the web console and later stages call only these):

- `build_identity(workspace, engine, progress=None)` — rebuild identities, identity_links,
  persons, record_persons and identity_changes from the collected records.
- `resolve_person(engine, id_type, raw_value)` / `find_person(engine, text)` — look up.
- `bind_identifier`, `unbind_identifier`, `unmerge_person` — operator overrides.
- `erase_person(workspace, engine, person_id, actor)` — PIPL/GDPR erasure.
- `normalize_identifier`, the id-type registry and the SQL normalizers in
  `jingzhun.identity.identifiers` (also used by the probabilistic matcher).

See docs/identity.md.
"""

from jingzhun.identity.config import IdentityConfig, load_identity_config
from jingzhun.identity.erasure import ErasureResult, IdentityError, erase_person
from jingzhun.identity.graph import IdentityResult, build_identity
from jingzhun.identity.operators import (
    Identifier,
    UnmergeResult,
    bind_identifier,
    find_person,
    normalize_identifier,
    resolve_person,
    unbind_identifier,
    unmerge_person,
)
from jingzhun.identity.registry import DEFAULT_REGISTRY, IdType, Registry

__all__ = [
    "DEFAULT_REGISTRY",
    "ErasureResult",
    "IdType",
    "Identifier",
    "IdentityConfig",
    "IdentityError",
    "IdentityResult",
    "Registry",
    "UnmergeResult",
    "bind_identifier",
    "build_identity",
    "erase_person",
    "find_person",
    "load_identity_config",
    "normalize_identifier",
    "resolve_person",
    "unbind_identifier",
    "unmerge_person",
]
