"""Skills: the Agent Skills package format, a sandbox runner, validation, mining and curation.

A pure library: skills travel as plain dicts shaped like ``kb.models.SkillCreate``; nothing here
imports ``kb``.
"""

from skills.archive import Rejection, read_tree
from skills.curation import bump_version, parameter_signature, should_prune
from skills.errors import PackageError, ParamError, SandboxError, SkillError
from skills.format import WARNING_RULES, PackageWarning, is_slug, slugify, to_skill_md
from skills.mining import Candidate, coverage, mine
from skills.package import (
    PACKAGE_KEYS,
    Resource,
    make_resource,
    package_digest,
    package_files,
    read_package,
    write_package,
)
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
    "PACKAGE_KEYS",
    "WARNING_RULES",
    "Candidate",
    "PackageError",
    "PackageWarning",
    "ParamError",
    "Rejection",
    "Resource",
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
    "make_resource",
    "mine",
    "next_status",
    "package_digest",
    "package_files",
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
