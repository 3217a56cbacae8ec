"""The study manifest: what a later ``autopeft resume`` needs to continue a study.

Written beside the study's outputs (``<output_dir>/<study>/study.json``) when the parent MLflow
run is created and updated when the study ends. It holds the resolved config (data paths made
absolute), the parent run, the Optuna storage and Ray's experiment folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel

from autopeft.errors import ConfigError
from autopeft.schema import Artifact

MANIFEST = Artifact.MANIFEST_FILE


class StudyManifest(BaseModel):
    study_name: str
    config: dict[str, Any]
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    optuna_storage: str
    ray_experiment: str
    status: str = "RUNNING"  # RUNNING until the best adapter is registered, then FINISHED
    registered_version: Optional[str] = None

    @staticmethod
    def path_for(output_dir: Path, study_name: str) -> Path:
        return output_dir / study_name / MANIFEST

    def save(self, output_dir: Path) -> None:
        path = self.path_for(output_dir, self.study_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=2))
        tmp.replace(path)  # atomic: a crash leaves the old manifest or the new one, never half

    @classmethod
    def load(cls, output_dir: Path, study_name: str) -> StudyManifest:
        path = cls.path_for(output_dir, study_name)
        if not path.is_file():
            known = sorted(p.parent.name for p in output_dir.glob(f"*/{MANIFEST}")) if output_dir.is_dir() else []
            hint = f" (studies there: {', '.join(known)})" if known else ""
            raise ConfigError(f"study: no study {study_name!r} in {str(output_dir)!r}{hint}")
        return cls.model_validate_json(path.read_text())
