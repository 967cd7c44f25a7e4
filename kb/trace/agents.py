"""Who spoke: one name per agent, whatever the log's convention for annotating a speaker."""

from __future__ import annotations

import re

from kb.models import Step

SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")


def canonical(name: str) -> str:
    """``"Orchestrator (thought)"`` and ``"Orchestrator (-> WebSurfer)"`` are ``"Orchestrator"``."""
    base = SUFFIX.sub("", name).strip()
    return base or name.strip()


def agent_name(step: Step) -> str:
    """The agent a step belongs to: its ``agent`` (else ``role``) without annotations."""
    return canonical(step.agent or step.role or "unknown")


def addressee(step: Step) -> str | None:
    """The agent a message is addressed to when the speaker says so (``Lead (-> Worker)``)."""
    match = re.search(r"\(\s*->\s*([^()]+)\)\s*$", step.agent or step.role or "")
    return match.group(1).strip() if match else None
