"""An internal file tree (uploads, exports): files found by path templates or a manifest.

Templates are globs under `root`, templated on the subject's identities (glob
characters in an identity are escaped). A manifest is a JSON-lines file of
`{"identity_type", "identity_value", "path"}` rows; erased rows leave it.

Whatever the identities hold, the connector removes only paths strictly inside
`root`: never `root` itself, never anything outside it. An identity that would
change a template's shape (blank, a separator, `.` or `..`, control characters)
is refused with a permanent error naming its type before anything is removed.
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
from connectors.templating import UnsafeIdentityError, check_value, expand, template_fields
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
        """The resolved path if it lies strictly inside root (root itself is never removable)."""
        resolved = path.resolve()
        if resolved == self.root:
            raise PermanentError(self.system, "a path resolves to the store's root itself, which is never "
                                 "removed; nothing was erased")
        if self.root not in resolved.parents:
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
        # Every identity and every match is checked before the first removal: a refused identity
        # or path leaves the tree as it was.
        wanted = self._wanted(subject) if self.settings.manifest else set()
        targets = [self._inside_root(Path(match)) for pattern in self._patterns(subject)
                   for match in sorted(glob.glob(pattern), reverse=True)]
        for target in targets:
            removed += self._remove(target)
        if self.settings.manifest:
            removed += self._erase_manifest(wanted)
        return EraseResult(status="erased" if removed else "not_found",
                           evidence=Evidence(records_affected=removed))

    def _patterns(self, subject: SubjectIdentities) -> list[str]:
        """Absolute glob patterns, root escaped too; an unsafe identity is refused before any match."""
        try:
            return [os.path.join(glob.escape(str(self.root)), pattern) for template in self.settings.paths
                    for pattern in expand(template, subject, glob.escape, target="path")]
        except UnsafeIdentityError as exc:
            raise PermanentError(self.system, f"{exc} where a path is built; nothing was erased") from None

    def _wanted(self, subject: SubjectIdentities) -> set[tuple[str, str]]:
        """The manifest keys of the subject; a blank one would match every row left blank."""
        wanted: set[tuple[str, str]] = {
            (i.identity_type, i.identity_value.strip().lower() if i.identity_type == "email"
             else i.identity_value.strip()) for i in subject.identities}
        try:
            for identity_type, value in wanted:
                check_value(identity_type, value, "value")
        except UnsafeIdentityError as exc:
            raise PermanentError(self.system, f"{exc}; nothing was erased") from None
        return wanted

    def _erase_manifest(self, wanted: set[tuple[str, str]]) -> int:
        manifest = self._inside_root(self.root / (self.settings.manifest or ""))
        if not manifest.exists():
            return 0
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
