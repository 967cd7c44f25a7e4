"""Skills: the Agent Skills package format, a sandbox runner, validation, mining and curation.

A pure library: skills travel as plain dicts shaped like ``kb.models.SkillCreate``; nothing here
imports ``kb``.
"""

from skills.archive import Rejection, read_tree
from skills.curation import bump_version, parameter_signature, should_prune
from skills.errors import PackageError, ParamError, SandboxError, SkillError
from skills.format import (
    is_slug,
    read_package,
    slugify,
    to_skill_md,
    write_package,
)
from skills.mining import Candidate, coverage, mine
from skills.sandbox import (
    RunLimits,
    RunResult,
    isolation,
    run_program,
    validate_params,
    validate_result,
)
from skills.validation import TestOutcome, approve, next_status, run_tests

__all__ = [
    "Candidate",
    "PackageError",
    "ParamError",
    "Rejection",
    "RunLimits",
    "RunResult",
    "SandboxError",
    "SkillError",
    "TestOutcome",
    "approve",
    "bump_version",
    "coverage",
    "is_slug",
    "isolation",
    "mine",
    "next_status",
    "parameter_signature",
    "read_package",
    "read_tree",
    "run_program",
    "run_tests",
    "should_prune",
    "slugify",
    "to_skill_md",
    "validate_params",
    "validate_result",
    "write_package",
]
