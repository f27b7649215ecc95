"""The files connector: path templates and a manifest, never outside its root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.base import PermanentError, TaskContext
from connectors.stores.files_store import FilesStoreConnector, FilesStoreSettings
from schemas import Identity, SubjectIdentities

CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="uploads", attempt=1)


def subject(**identities: str) -> SubjectIdentities:
    """Built without the contract's checks: the connector must hold even when they are bypassed."""
    return SubjectIdentities.model_construct(identities=[
        Identity.model_construct(identity_type=k, identity_value=v) for k, v in identities.items()])


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "files"
    for user in ("u1", "u2", "u*"):
        (base / "uploads" / user).mkdir(parents=True)
        (base / "uploads" / user / "cv.pdf").write_text("cv")
    (base / "exports").mkdir()
    for email in ("a@example.com", "b@example.com"):
        (base / "exports" / f"{email}.zip").write_text("zip")
    (base / "secret.txt").write_text("keep")
    manifest = [{"identity_type": "email", "identity_value": "A@example.com", "path": "scans/id-a.png"},
                {"identity_type": "email", "identity_value": "b@example.com", "path": "scans/id-b.png"}]
    (base / "scans").mkdir()
    for entry in manifest:
        (base / entry["path"]).write_text("scan")
    (base / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in manifest))
    return base


def store(root: Path) -> FilesStoreConnector:
    return FilesStoreConnector("uploads", FilesStoreSettings(
        root=str(root), paths=["uploads/{user_id}", "exports/{email}.zip"], manifest="manifest.jsonl"))


def test_erases_only_the_subjects_files(root: Path) -> None:
    before = tree(root)
    result = store(root).erase(subject(email="a@example.com", user_id="u*"), CONTEXT)
    assert result.status == "erased" and result.evidence and result.evidence.records_affected == 3
    removed = {"uploads/u*", "uploads/u*/cv.pdf", "exports/a@example.com.zip", "scans/id-a.png"}
    assert tree(root) == [p for p in before if p not in removed], "u1 and u2 survive the '*'"
    assert "A@example.com" not in (root / "manifest.jsonl").read_text()
    assert "b@example.com" in (root / "manifest.jsonl").read_text()
    assert store(root).erase(subject(email="a@example.com", user_id="u*"), CONTEXT).status == "not_found"


def test_an_identity_cannot_climb_out_of_the_root(root: Path) -> None:
    with pytest.raises(PermanentError, match="user_id holds a path separator"):
        store(root).erase(subject(user_id="../.."), CONTEXT)
    assert (root / "secret.txt").exists() and (root.parent / "files").exists()


def test_templates_are_checked() -> None:
    with pytest.raises(ValueError, match="must stay under root"):
        FilesStoreSettings(root="/srv", paths=["../{email}"])
    with pytest.raises(ValueError, match="must name an identity"):
        FilesStoreSettings(root="/srv", paths=["uploads/*"])
