import stat
from pathlib import Path

import pytest

from jingzhun.core import WorkspaceConfig, WorkspaceError, init_workspace, open_workspace
from jingzhun.core.workspace import WORKSPACE_ENV


def test_init_lays_out_the_workspace(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "brand")
    for part in ("jingzhun.yaml", "definitions", "log", ".jingzhun/pii_salt"):
        assert (workspace.root / part).exists(), part
    salt = workspace.root / ".jingzhun" / "pii_salt"
    assert len(salt.read_bytes()) == 32
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert open_workspace(workspace.root).config.name == "brand"


def test_init_refuses_an_existing_workspace(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    with pytest.raises(WorkspaceError, match="already"):
        init_workspace(tmp_path)


def test_missing_folder_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as raised:
        open_workspace(tmp_path / "nowhere")
    assert "jingzhun init" in raised.value.fix


def test_folder_without_config_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a jingzhun workspace"):
        open_workspace(tmp_path)


def test_workspace_comes_from_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = init_workspace(tmp_path / "env", WorkspaceConfig(name="env"))
    from_cwd = init_workspace(tmp_path / "cwd", WorkspaceConfig(name="cwd"))
    monkeypatch.chdir(from_cwd.root)
    monkeypatch.setenv(WORKSPACE_ENV, str(from_env.root))
    assert open_workspace().config.name == "env"
    monkeypatch.delenv(WORKSPACE_ENV)
    assert open_workspace().config.name == "cwd"
    assert open_workspace(from_env.root).config.name == "env"  # explicit wins
