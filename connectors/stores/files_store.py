"""An internal file tree (uploads, exports): files found by path templates or a manifest.

Templates are globs under `root`, templated on the subject's identities (glob
characters in an identity are escaped). A manifest is a JSON-lines file of
`{"identity_type", "identity_value", "path"}` rows; erased rows leave it. No path
may leave `root`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import EraseResult, PermanentError, TaskContext
from connectors.templating import expand, template_fields
from schemas import Evidence, SubjectIdentities


class FilesStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(min_length=1)
    paths: list[str] = Field(default_factory=list, description="Glob templates relative to root")
    manifest: str | None = Field(default=None, description="JSON-lines manifest, relative to root")

    @field_validator("paths")
    @classmethod
    def _templated(cls, value: list[str]) -> list[str]:
        for template in value:
            if template.startswith("/") or ".." in Path(template).parts:
                raise ValueError(f"path template {template!r} must stay under root")
            if not template_fields(template):
                raise ValueError(f"path template {template!r} must name an identity, e.g. {{email}}")
        return value

    @model_validator(mode="after")
    def _something(self) -> FilesStoreSettings:
        if not self.paths and not self.manifest:
            raise ValueError("give 'paths' (templates) or 'manifest'")
        return self


class FilesStoreConnector:
    def __init__(self, system: str, settings: FilesStoreSettings) -> None:
        self.system = system
        self.settings = settings
        self.root = Path(settings.root).resolve()
        self._manifest_lock = threading.Lock()

    def _inside_root(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise PermanentError(self.system, "a path escapes the store's root; nothing was erased")
        return resolved

    def _remove(self, path: Path) -> int:
        target = self._inside_root(path)
        if target.is_dir():
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target)
            return count
        if target.exists():
            target.unlink()
            return 1
        return 0

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        if not self.root.is_dir():
            raise PermanentError(self.system, f"root directory {self.settings.root!r} does not exist")
        removed = 0
        for template in self.settings.paths:
            for pattern in expand(template, subject, glob.escape):
                for match in sorted(glob.glob(str(self.root / pattern)), reverse=True):
                    removed += self._remove(Path(match))
        if self.settings.manifest:
            removed += self._erase_manifest(subject)
        return EraseResult(status="erased" if removed else "not_found",
                           evidence=Evidence(records_affected=removed))

    def _erase_manifest(self, subject: SubjectIdentities) -> int:
        manifest = self._inside_root(self.root / (self.settings.manifest or ""))
        if not manifest.exists():
            return 0
        wanted = {(i.identity_type, i.identity_value.strip().lower() if i.identity_type == "email"
                   else i.identity_value.strip()) for i in subject.identities}
        removed = 0
        with self._manifest_lock:
            kept = []
            for line in manifest.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                value = str(entry["identity_value"]).strip()
                key = (entry["identity_type"], value.lower() if entry["identity_type"] == "email" else value)
                if key in wanted:
                    removed += self._remove(self.root / entry["path"])
                else:
                    kept.append(line)
            temporary = manifest.with_suffix(".tmp")
            temporary.write_text("".join(f"{k}\n" for k in kept), encoding="utf-8")
            os.replace(temporary, manifest)
        return removed

    def check(self) -> str:
        if not self.root.is_dir():
            raise PermanentError(self.system, f"root directory {self.settings.root!r} does not exist")
        return "root directory present"

    def close(self) -> None:
        return None
