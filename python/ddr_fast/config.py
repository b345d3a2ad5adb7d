"""``Config``: DD-Ranking's configuration object, with the same constructor and methods
(``Config(dict)``, ``Config.from_file(path)``, ``get``, ``update``). Its keys are DD-Ranking's YAML
keys plus ddr-fast's (``width``, ``lr_grid``, ``seed``, ``full_epochs``, ...; see the README)."""

import json
from typing import Any, Dict, Optional

from . import _core


class Config:
    """Configuration object holding DD-Ranking keys."""

    def __init__(self, config: Optional[Dict[str, Any]] = None):
        self.config = dict(config or {})

    @classmethod
    def from_file(cls, filepath: str) -> "Config":
        """Load a DD-Ranking YAML (``.yaml``/``.yml``) or JSON (``.json``) config file."""
        path = str(filepath)
        if path.endswith((".yaml", ".yml")):
            # ddr-fast's own YAML reader: no PyYAML needed, the same parser as `ddr-fast eval`.
            return cls(json.loads(_core.read_yaml(path)))
        if path.endswith(".json"):
            with open(path, "r") as f:
                return cls(json.load(f))
        raise ValueError(f"{path}: unsupported config format; use YAML (.yaml/.yml) or JSON (.json)")

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def update(self, overrides: Dict[str, Any]) -> None:
        self.config.update(overrides)

    def __repr__(self) -> str:
        return f"Config({self.config})"
