"""How old each model under ``models/`` is, so a model that stopped being refreshed is flagged.

The service saves every model (detector bank, forecast fits, ranking weights) as a new
``<name>/v<N>.json`` version; a latest version older than ``max_age_s`` means learning has
stalled (saves failing, the pipeline thread stuck, no data) while detection goes on with
yesterday's picture. A version's metadata is read once: its ``created_unix`` never changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aiops.detect.models import versions


@dataclass(frozen=True)
class ModelAge:
    name: str
    version: int
    created_unix: float
    age_s: float
    stale: bool


class ModelAges:
    def __init__(self, models_dir: str | Path, max_age_s: float = 7200.0) -> None:
        self.models_dir = Path(models_dir)
        self.max_age_s = max_age_s
        self._created: dict[tuple[str, int], float] = {}

    def read(self, now_unix: float) -> list[ModelAge]:
        """The latest version of every model, with its age at ``now_unix``."""
        if not self.models_dir.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.models_dir.iterdir() if p.is_dir()):
            known = versions(self.models_dir, folder.name)
            if not known:
                continue
            created = self._created_unix(folder, known[-1])
            age = max(now_unix - created, 0.0)
            out.append(ModelAge(folder.name, known[-1], created, age, age > self.max_age_s))
        return out

    def _created_unix(self, folder: Path, version: int) -> float:
        key = (folder.name, version)
        if key not in self._created:
            path = folder / f"v{version}.json"
            try:
                self._created[key] = float(json.loads(path.read_text())["created_unix"])
            except (OSError, ValueError, KeyError, TypeError):  # older or foreign metadata: the file's time
                self._created[key] = path.stat().st_mtime
        return self._created[key]
