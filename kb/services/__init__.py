"""Services over a :class:`kb.store.Store`, one namespace each; ``KnowledgeBase`` composes them.

Who calls whom (each arrow: takes in its constructor):

    Experiences -> StepWindows
    Search
    Loop        -> Search, StepWindows
    Gate        -> Experiences
    Skills      -> Search, Experiences, Gate
    Tracing     -> Search, Experiences, Skills
    Transfer    -> Experiences, Skills, Tracing
    Viewer      -> Search, Experiences, Skills
    Tokens
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from kb.errors import Invalid
from kb.store import Store


class Service:
    """What every service holds: the store, its namespace and that namespace's records."""

    def __init__(self, store: Store, namespace: str):
        self.store = store
        self.namespace = namespace
        self.records = store.records(namespace)


def coerce(model: type[BaseModel], value: Any, what: str) -> Any:
    """``value`` as ``model`` (a model, another model's dump, or a mapping), or ``Invalid``
    naming the field and the problem."""
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        from kb.importers import describe  # the importers load on first use

        raise Invalid(f"{what}: {describe(exc)}") from exc


__all__ = ["Service", "coerce"]
