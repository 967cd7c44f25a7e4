"""Settings. The only module that reads the environment (prefix ``KB_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Configuration, from ``KB_*`` environment variables or keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="KB_", extra="ignore")

    store: Path | None = Field(None, description="store directory (default: the user data dir)")
    namespace: str = "default"
    sql_url: str | None = Field(
        None, description="SQLAlchemy URL (default: kb.sqlite in the store)"
    )
    index_uri: str | None = Field(None, description="LanceDB URI (default: index/ in the store)")
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name or path")
    device: str = Field("auto", description="auto | cpu | cuda | mps")
    batch_size: int = Field(64, ge=1, le=4096)
    # Fusion of the hybrid search (kb.retrieval: "score" sums scaled scores, "rrf" reciprocal
    # ranks). Tuned on the MetaTool dev half and the tau leave-one-task-out benchmark (benchmarks/).
    fusion: Literal["score", "rrf"] = "score"
    w_vector: float = 1.0
    w_lexical: float = 0.5
    w_structure: float = 0.5
    w_graph: float = 0.3
    w_plan: float = 1.5
    rrf_k: int = 20
    # Tracer LLM back end (any OpenAI-compatible endpoint); off unless a base URL is set.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = 60.0
    # Distillation of strategy, plan and lessons from each stored trajectory (kb.distill).
    distill: Literal["offline", "off"] = Field(
        "offline", description="offline: distil every stored run without a model; off: never"
    )
    # MCP server.
    allow_run: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rate_limit: float = Field(
        120.0, ge=0, description="HTTP MCP requests a minute per token (0: no limit)"
    )
    rate_burst: int = Field(30, ge=1, description="HTTP MCP requests a token may send at once")
    # Several servers on one database: how often each server's index checks SQL's change log.
    follow_interval: float = Field(
        0.25, gt=0, le=60, description="seconds between a server's checks of the change log"
    )
    # Pre-execution gate: how long a session (one agent run) is kept after its last check.
    gate_session_days: float = Field(7.0, gt=0, description="days a gate session is kept")
    # Records: a step's content, result or error is stored whole up to this many characters.
    max_step_chars: int = Field(1_000_000, ge=20_000)
    # Test hook: die (SIGKILL) at this named point of a write (see kb.store.CRASH_POINTS).
    crash_at: str | None = None

    def store_path(self) -> Path:
        return Path(self.store) if self.store else Path(platformdirs.user_data_dir("kb")) / "store"


def settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (None values are ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
