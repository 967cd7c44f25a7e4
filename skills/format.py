"""The Agent Skills ``SKILL.md`` text format, our ``skill.json``, and how they become a skill dict.

A package is a folder ``NAME/`` holding:

* ``SKILL.md``: YAML front matter between ``---`` lines (the spec's keys are ``name``,
  ``description``, ``license``, ``compatibility``, ``metadata`` (string map) and
  ``allowed-tools``) and a Markdown body, the author's guidance;
* ``skill.json`` (ours): version, status, mode, scope, parameters, returns, tests, provenance,
  environment, tags, domain, and the description or steps when ``SKILL.md`` cannot say them;
* ``scripts/run.py`` for executable skills: the program exposing ``run(**params)``;
* any other files (``scripts/``, ``references/``, ``assets/``, binaries...), kept byte for byte.

This module works on text; the folder (files, modes, digests, writing) is ``skills.package``, and
many packages at once (a folder tree or a zip) are ``skills.archive``.

Reading is lenient where only the spec is strict: a description over 1,024 characters, unknown
front-matter keys, a name that does not match its folder or is not a slug each give a
``PackageWarning`` (rule, path, detail) and the package still reads. What makes a package
unreadable (no front matter, invalid YAML, no name or description, a broken ``skill.json``) raises
``PackageError``.

Skills travel as plain dicts shaped like ``kb.models.SkillCreate``.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, TypedDict

import yaml

from skills.errors import PackageError, SkillError

__all__ = [
    "FRONT_MATTER_KEYS",
    "MAX_DESCRIPTION",
    "SKILL_JSON_SCHEMA",
    "WARNING_RULES",
    "PackageWarning",
    "cut_description",
    "decode_text",
    "dump_json",
    "is_slug",
    "patch_front_matter",
    "render_skill_md",
    "skill_from_text",
    "skill_json",
    "slugify",
    "split_front_matter",
    "to_skill_md",
]

MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
FRONT_MATTER_KEYS = frozenset(
    {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
)
STATUSES = ("draft", "approved", "validated", "broken", "deprecated")
MODES = ("executable", "guided")
MAX_FILE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 50 << 20
MAX_FILES = 1000
MAX_RATIO = 100
"""A zip member expanding more than this many times its compressed size is refused."""

WARNING_RULES: dict[str, str] = {
    "description-length": "the spec limits 'description' to 1,024 characters",
    "compatibility-length": "the spec limits 'compatibility' to 500 characters",
    "unknown-field": "the spec allows only name, description, license, compatibility, "
    "metadata and allowed-tools in the front matter",
    "field-type": "a front-matter field has a type the spec does not allow; it is ignored",
    "name-format": "the spec wants a lowercase name of letters, digits and single hyphens; "
    "the skill is stored under the slug of the name",
    "name-mismatch": "the spec wants the folder named after the skill; export writes NAME/",
    "skill-md-name": "the file is written back as SKILL.md",
    "program-ignored": "scripts/run.py is not a program with run(**params); it is kept as a "
    "file and the skill is guided",
}
"""The rules a package may break and still be read, each with what it means."""


class PackageWarning(TypedDict):
    """A rule a package breaks that does not stop it from being read."""

    rule: str
    path: str
    detail: str


def _warning(rule: str, path: str, detail: str) -> PackageWarning:
    return {"rule": rule, "path": path, "detail": detail}


_SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_DESCRIPTION_HEADING = "Description"
_SECTIONS_OWNED = {"description", "when to use", "parameters", "returns"}
_ITEM_RE = re.compile(r"^ {0,2}(?:\d+[.)]|[-*+])\s+(.*)$")
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OPT_STR = {"type": ["string", "null"]}

SKILL_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "status": {"enum": list(STATUSES)},
        "mode": {"enum": list(MODES)},
        "scope": _OPT_STR,
        "parameters": {"type": "object"},
        "returns": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "params": {"type": "object"},
                    "expect": True,
                    "expect_error": {"type": "boolean"},
                },
            },
        },
        "provenance": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "source": {"type": "string"},
                "imported_from": _OPT_STR,
                "source_id": _OPT_STR,
                "created_at": _OPT_STR,
            },
        },
        "environment": _STR_MAP,
        "tags": {"type": "array", "items": {"type": "string"}},
        "domain": _OPT_STR,
        "description": {"type": "string", "minLength": 1},
        "steps": {"type": "array", "items": {"type": "string"}},
    },
}
"""JSON Schema of ``skill.json``."""


# -- names ----------------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def slugify(name: str) -> str:
    """Turn any name into a valid skill slug.

    The rule: NFKD-normalise and drop combining marks (``é`` -> ``e``); split camelCase words
    (``ChatOCR`` -> ``Chat-OCR``, ``myHTTPTool`` -> ``my-HTTP-Tool``); lowercase; replace every
    run of characters other than ``a-z0-9`` with one hyphen; strip hyphens at both ends; if longer
    than 64 characters, cut at the last hyphen within the first 64 (or hard at 64 when there is
    none) and strip a trailing hyphen; an empty result becomes ``"skill"``.

    Args:
        name: any text (a tool name, a foreign skill name, a title).

    Returns:
        A slug matching ``^[a-z0-9]+(-[a-z0-9]+)*$`` of at most 64 characters.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_ish = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    ascii_ish = _CAMEL.sub("-", ascii_ish)
    slug = _NOT_SLUG.sub("-", ascii_ish.lower()).strip("-")
    if len(slug) > MAX_NAME:
        cut = slug[: MAX_NAME + 1]
        slug = cut[: cut.rindex("-")] if "-" in cut else slug[:MAX_NAME]
        slug = slug.strip("-")
    return slug or "skill"


def is_slug(name: str) -> bool:
    """Whether ``name`` is a valid skill name (1-64 lowercase letters, digits, single hyphens)."""
    return len(name) <= MAX_NAME and bool(_SLUG_RE.match(name))


# -- writing --------------------------------------------------------------------------------------
_NON_PRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"
)


def _yaml_str(text: str) -> str:
    """A double-quoted YAML scalar that PyYAML and strictyaml read back exactly.

    ``---`` is escaped because the reference parser splits the file on it.
    """
    quoted = json.dumps(text, ensure_ascii=False)
    quoted = _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
    return quoted.replace("---", "-\\u002d-")


_PLAIN_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _yaml_key(text: str) -> str:
    """``text`` plain when YAML reads it back as the same string, else double-quoted."""
    if _PLAIN_KEY.match(text) and text not in _YAML_WORDS and not text.endswith(("-", "_")):
        return text
    return _yaml_str(text)


def cut_description(text: str) -> str:
    """Cut a long description at the last sentence end before the limit."""
    if len(text) <= MAX_DESCRIPTION:
        return text
    head = text[:MAX_DESCRIPTION]
    end = head.rfind(". ")
    if end > 0:
        return head[: end + 1]
    space = head[: MAX_DESCRIPTION - 1].rfind(" ")
    cut = head[:space] if space > 0 else head[: MAX_DESCRIPTION - 1]
    return cut.rstrip() + "…"


def _front_matter(skill: Mapping[str, Any]) -> dict[str, Any]:
    environment = dict(skill.get("environment") or {})
    metadata: dict[str, str] = {
        "version": str(skill.get("version", 1)),
        "status": str(skill.get("status", "draft")),
        "mode": str(skill.get("mode") or ("executable" if skill.get("program") else "guided")),
    }
    if skill.get("domain"):
        metadata["domain"] = str(skill["domain"])
    if skill.get("tags"):
        metadata["tags"] = ", ".join(str(t) for t in skill["tags"])
    front: dict[str, Any] = {
        "name": skill["name"],
        "description": cut_description(str(skill["description"]).strip()),
    }
    if environment.get("license"):
        front["license"] = environment["license"]
    compat = environment.get("compatibility") or "; ".join(
        f"{k}: {v}" for k, v in environment.items() if k not in {"license", "allowed-tools"}
    )
    if compat:
        front["compatibility"] = compat if len(compat) <= MAX_COMPATIBILITY else compat[:499] + "…"
    front["metadata"] = metadata
    if environment.get("allowed-tools"):
        front["allowed-tools"] = environment["allowed-tools"]
    return front


def _param_lines(parameters: Mapping[str, Any]) -> list[str]:
    props = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    lines = []
    for pname, spec in props.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = spec.get("type", "any")
        kind = " | ".join(kind) if isinstance(kind, list) else str(kind)
        need = "required" if pname in required else "optional"
        desc = f": {spec['description']}" if spec.get("description") else ""
        lines.append(f"- `{pname}` ({kind}, {need}){desc}")
    return lines


def to_skill_md(skill: Mapping[str, Any]) -> str:
    """The text of a skill's ``SKILL.md``: the one ``write_package`` writes.

    Args:
        skill: a ``SkillCreate``-shaped mapping (``name`` and ``description`` required); with
            ``skill_md`` (the package's original text) that text is kept, verbatim while the skill
            is unchanged (see ``skills.package.package_files``).

    Returns:
        Without ``skill_md``: front matter (description cut to 1,024 characters at a sentence end;
        version, status, mode, domain and tags in ``metadata``) and a Markdown body: the whole
        description when it was cut, ``## When to use`` (scope), ``## Steps`` (numbered) and
        ``## Parameters``.
    """
    if skill.get("skill_md") is not None:
        from skills.package import package_files

        return package_files(skill)[0]["data"].decode("utf-8")
    return render_skill_md(skill)


def render_skill_md(skill: Mapping[str, Any]) -> str:
    """A new ``SKILL.md`` for ``skill`` (ignoring any original text): see ``to_skill_md``."""
    name = str(skill.get("name", ""))
    if not is_slug(name):
        raise SkillError(f"skill name {name!r} is not a valid slug; try {slugify(name)!r}")
    description = str(skill.get("description") or "").strip()
    if not description:
        raise SkillError(f"skill {name!r} has no description")
    front = _front_matter(skill)
    lines = ["---"]
    for key, value in front.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {_yaml_key(k)}: {_yaml_str(v)}" for k, v in value.items())
        elif key == "name":
            lines.append(f"{key}: {_yaml_key(str(value))}")
        else:
            lines.append(f"{key}: {_yaml_str(str(value))}")
    lines += ["---", "", f"# {name}", ""]
    if front["description"] != description:
        lines += [f"## {_DESCRIPTION_HEADING}", "", description, ""]
    if skill.get("scope"):
        lines += ["## When to use", "", str(skill["scope"]).strip(), ""]
    steps = [str(s).strip() for s in skill.get("steps") or [] if str(s).strip()]
    if steps:
        lines += ["## Steps", ""]
        for i, step in enumerate(steps, 1):
            marker = f"{i}. "
            first, *rest = step.split("\n")
            lines.append(marker + first)
            lines.extend((" " * len(marker) + r) if r.strip() else "" for r in rest)
        lines.append("")
    params = _param_lines(skill.get("parameters") or {})
    if params:
        lines += ["## Parameters", "", *params, ""]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def skill_json(
    skill: Mapping[str, Any], *, said: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``skill.json`` document of ``skill``.

    Args:
        skill: a ``SkillCreate``-shaped mapping.
        said: the skill as its ``SKILL.md`` alone reads; the description and steps are written
            here only where they differ from it (never by rewriting the author's body).
    """
    program = skill.get("program")
    tests = [
        {
            "name": t.get("name", "test"),
            "params": dict(t.get("params") or {}),
            "expect": t.get("expect"),
            "expect_error": bool(t.get("expect_error", False)),
        }
        for t in skill.get("tests") or []
    ]
    provenance = {k: v for k, v in dict(skill.get("provenance") or {}).items() if v is not None}
    meta: dict[str, Any] = {
        "version": int(skill.get("version", 1)),
        "status": str(skill.get("status", "draft")),
        "mode": str(skill.get("mode") or ("executable" if program else "guided")),
        "scope": skill.get("scope"),
        "parameters": dict(skill.get("parameters") or {"type": "object", "properties": {}}),
        "returns": dict(skill.get("returns") or {}),
        "tests": tests,
        "provenance": provenance,
        "environment": {str(k): str(v) for k, v in dict(skill.get("environment") or {}).items()},
        "tags": [str(t) for t in skill.get("tags") or []],
        "domain": skill.get("domain"),
    }
    if said is not None:
        description = str(skill.get("description") or "").strip()
        if description != said.get("description"):
            meta["description"] = description
        steps = [str(s) for s in skill.get("steps") or []]
        if steps != said.get("steps"):
            meta["steps"] = steps
    return meta


def dump_json(meta: Mapping[str, Any]) -> str:
    """``skill.json`` text: two-space indented, UTF-8, a final newline."""
    return json.dumps(meta, indent=2, ensure_ascii=False, default=_jsonable) + "\n"


# -- reading --------------------------------------------------------------------------------------
def decode_text(data: bytes, label: str) -> str:
    """``data`` as UTF-8 text, exactly as stored (no newline translation).

    Raises:
        PackageError: naming ``label`` when ``data`` is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageError(label, f"is not UTF-8 text ({exc.reason})") from exc


def _front_lines(text: str, label: str) -> tuple[list[str], int]:
    """The lines of ``text`` (BOM dropped) and the index of the line closing the front matter."""
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise PackageError(label, "does not start with YAML front matter (a '---' line)")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise PackageError(label, "front matter is not closed with a '---' line")
    return lines, end


def split_front_matter(text: str, label: str) -> tuple[dict[str, Any], str]:
    lines, end = _front_lines(text, label)
    try:
        front = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise PackageError(label, f"front matter is not valid YAML: {exc}") from exc
    if not isinstance(front, dict):
        raise PackageError(label, "front matter must be a YAML mapping")
    return front, "\n".join(lines[end + 1 :])


def _scalar(value: Any) -> str | None:
    """A YAML scalar as the string the spec's parser reads; None for anything else."""
    if isinstance(value, str | int | float | bool | date):
        return str(value)
    return None


def _check_front(
    front: dict[str, Any], label: str, folder_name: str | None
) -> tuple[str, list[PackageWarning]]:
    """The skill name, and a warning for each spec rule ``front`` breaks.

    Raises:
        PackageError: without a non-empty string ``name`` or ``description``.
    """
    for key in ("name", "description"):
        if not isinstance(front.get(key), str) or not front[key].strip():
            raise PackageError(label, f"front matter needs a non-empty string '{key}'")
    found: list[PackageWarning] = []
    unknown = sorted(str(k) for k in front if k not in FRONT_MATTER_KEYS)
    if unknown:
        allowed = ", ".join(sorted(FRONT_MATTER_KEYS))
        found.append(
            _warning(
                "unknown-field", label, f"unknown front-matter key(s) {unknown}; allowed: {allowed}"
            )
        )
    if len(front["description"]) > MAX_DESCRIPTION:
        found.append(
            _warning(
                "description-length",
                label,
                f"description is {len(front['description'])} characters; "
                f"the limit is {MAX_DESCRIPTION}",
            )
        )
    for key in ("license", "compatibility"):
        if front.get(key) is not None and _scalar(front[key]) is None:
            found.append(_warning("field-type", label, f"'{key}' must be a string"))
    compatibility = _scalar(front.get("compatibility")) or ""
    if len(compatibility) > MAX_COMPATIBILITY:
        found.append(
            _warning(
                "compatibility-length",
                label,
                f"'compatibility' is {len(compatibility)} characters; "
                f"the limit is {MAX_COMPATIBILITY}",
            )
        )
    tools = front.get("allowed-tools")
    if tools is not None and not (
        isinstance(tools, str)
        or (isinstance(tools, list) and all(isinstance(t, str) for t in tools))
    ):
        found.append(
            _warning("field-type", label, "'allowed-tools' must be a string (or a list of strings)")
        )
    meta = front.get("metadata")
    if meta is not None and not (
        isinstance(meta, dict) and all(_scalar(v) is not None for v in meta.values())
    ):
        found.append(
            _warning("field-type", label, "'metadata' must be a map of strings to strings")
        )
    raw = front["name"].strip()
    name = raw if is_slug(raw) else slugify(raw)
    if name != raw:
        found.append(
            _warning("name-format", label, f"name {raw!r} is not a valid slug; stored as {name!r}")
        )
    if folder_name is not None and raw != folder_name:
        found.append(
            _warning(
                "name-mismatch",
                label,
                f"name {raw!r} does not match the folder name {folder_name!r}",
            )
        )
    return name, found


def _sections(body: str) -> tuple[list[str], dict[str, str]]:
    """Split a Markdown body on level-2 headings: (text before the first, {heading: text})."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = head
    fenced = False
    for line in body.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = sections.setdefault(line[3:].strip().lower(), [])
            continue
        current.append(line)
    return head, {k: "\n".join(v).strip() for k, v in sections.items()}


def _parse_list(text: str) -> list[str]:
    items: list[list[str]] = []
    width = 0
    for line in text.split("\n"):
        match = _ITEM_RE.match(line)
        if match:
            items.append([match.group(1)])
            width = match.start(1)
        elif items:
            indent = len(line) - len(line.lstrip(" "))
            items[-1].append(line[min(indent, width) :])
    return ["\n".join(lines).strip() for lines in items if "\n".join(lines).strip()]


def _paragraphs(text: str) -> list[str]:
    out: list[str] = []
    block: list[str] = []
    fenced = False
    for line in [*text.split("\n"), ""]:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and not line.strip():
            para = "\n".join(block).strip()
            if para and not re.fullmatch(r"#+ .*", para):
                out.append(para)
            block = []
        else:
            block.append(line)
    return out


def _check_program(source: str, label: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PackageError(label, f"is not valid Python (line {exc.lineno}: {exc.msg})") from exc
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        raise PackageError(label, "defines no top-level function 'run(**params)'")


def _front_skill(front: dict[str, Any], body: str, name: str, where: str) -> dict[str, Any]:
    """The skill that front matter and body alone say (before ``skill.json`` and the program)."""
    head, sections = _sections(body)
    description = front["description"].strip()
    long_text = sections.get(_DESCRIPTION_HEADING.lower(), "")
    if long_text and long_text.startswith(description.rstrip("…").rstrip()):
        description = long_text
    if "steps" in sections:
        steps = _parse_list(sections["steps"])
    else:
        rest = [t for h, t in sections.items() if h not in _SECTIONS_OWNED]
        steps = _paragraphs("\n\n".join(["\n".join(head), *rest]))

    raw_meta = front.get("metadata")
    metadata = {
        str(k): text
        for k, v in (raw_meta.items() if isinstance(raw_meta, dict) else ())
        if (text := _scalar(v)) is not None
    }
    environment: dict[str, str] = {}
    for key in ("license", "compatibility", "allowed-tools"):
        value = front.get(key)
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            value = " ".join(value)
        text = _scalar(value)
        if text:
            environment[key] = text
    known_meta = {"version", "status", "mode", "domain", "tags"}
    environment.update({f"metadata.{k}": v for k, v in metadata.items() if k not in known_meta})
    version = metadata.get("version", "1")
    return {
        "name": name,
        "description": description,
        "version": int(version) if version.isdigit() and int(version) >= 1 else 1,
        "scope": sections.get("when to use") or None,
        "parameters": {"type": "object", "properties": {}},
        "returns": {},
        "steps": steps,
        "program": None,
        "mode": "guided",
        "environment": environment,
        "tests": [],
        "tags": [t.strip() for t in metadata.get("tags", "").split(",") if t.strip()],
        "domain": metadata.get("domain") or None,
        "status": "draft",
        "provenance": {"source": "import", "imported_from": where},
    }


def _apply_skill_json(skill: dict[str, Any], data: bytes, label: str) -> str | None:
    """Update ``skill`` from a ``skill.json``; return the mode it declares."""
    try:
        extra = json.loads(decode_text(data, label))
    except json.JSONDecodeError as exc:
        raise PackageError(label, f"is not valid JSON: {exc}") from exc
    from jsonschema import Draft202012Validator  # on first use: ~0.1 s to import

    problems = sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
        for e in Draft202012Validator(SKILL_JSON_SCHEMA).iter_errors(extra)
    )
    if problems:
        raise PackageError(label, "; ".join(problems))
    declared: str | None = extra.pop("mode", None)
    extra.pop("status", None)  # a package never declares its own status: see read_package
    if "description" in extra:
        extra["description"] = extra["description"].strip()
    skill.update(extra)
    skill["tests"] = [
        {"name": "test", "params": {}, "expect": None, "expect_error": False, **t}
        for t in skill["tests"]
    ]
    return declared


def skill_from_text(
    skill_md: str,
    *,
    skill_json: bytes | None = None,
    run_py: bytes | None = None,
    where: str = ".",
    folder_name: str | None = None,
    md_name: str = "SKILL.md",
) -> tuple[dict[str, Any], list[PackageWarning]]:
    """Interpret a package's ``SKILL.md`` (plus its ``skill.json`` and ``scripts/run.py``).

    Args:
        skill_md: the text of ``SKILL.md``.
        skill_json: the bytes of ``skill.json``, if the package has one: it overrides what
            ``SKILL.md`` says and must match ``SKILL_JSON_SCHEMA``.
        run_py: the bytes of ``scripts/run.py``, if any: the program of an executable skill,
            unless ``skill.json`` declares the skill ``guided`` (then it is just a file). Without
            ``skill.json`` (a third-party package) a file that is not such a program is only a
            warning (``program-ignored``); with it, an error.
        where: how to name the package in provenance and errors.
        folder_name: the package folder's name, checked against ``name`` (None: not checked).
        md_name: the file name used in messages.

    Returns:
        (the skill dict, always a ``draft``; the warnings, each naming its rule).

    Raises:
        PackageError: naming the file and the problem.
    """
    label = f"{where}/{md_name}"
    front, body = split_front_matter(skill_md, label)
    name, found = _check_front(front, label, folder_name)
    skill = _front_skill(front, body, name, where)
    declared = None
    if skill_json is not None:
        declared = _apply_skill_json(skill, skill_json, f"{where}/skill.json")
    if run_py is not None and declared != "guided":
        slabel = f"{where}/scripts/run.py"
        try:
            program = decode_text(run_py, slabel)
            _check_program(program, slabel)
        except PackageError as exc:
            if skill_json is not None:
                raise
            found.append(_warning("program-ignored", slabel, exc.reason))
        else:
            skill["program"] = program
            skill["mode"] = "executable"
    if declared and declared != skill["mode"]:
        raise PackageError(
            f"{where}/skill.json",
            f"mode is {declared!r} but the package "
            + ("has" if skill["program"] else "has no")
            + " scripts/run.py",
        )
    return skill, found


# -- patching the front matter --------------------------------------------------------------------
_TOP_KEY = re.compile(
    r"""^(?P<key>[A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"\\]*"|'[^']*')[ \t]*:(?:[ \t]|$)"""
)


def _emit(key: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [
            f"{key}:",
            *(f"  {_yaml_key(str(k))}: {_yaml_str(str(v))}" for k, v in value.items()),
        ]
    if isinstance(value, str):
        return [f"{key}: {_yaml_str(value)}"]
    dumped = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, width=1 << 16)
    return dumped.rstrip("\n").split("\n")


def patch_front_matter(text: str, changes: Mapping[str, Any]) -> str:
    """``text`` (a ``SKILL.md``) with only the top-level front-matter keys in ``changes`` rewritten.

    Every other line (other keys, their formatting and comments, the body) is kept byte for byte.

    Args:
        text: the SKILL.md text.
        changes: key -> new value (a string, or a string map for ``metadata``); None removes the
            key. A key not present is added at the end of the front matter.

    Returns:
        The new text. When the front matter is too unusual to patch line by line (the result would
        not read back as intended) it is re-emitted whole; the body is kept either way.
    """
    label = "SKILL.md"
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines, end = _front_lines(text, label)
    cr = "\r" if lines[0].endswith("\r") else ""
    blocks: list[tuple[str | None, list[str]]] = []
    for line in lines[1:end]:
        match = _TOP_KEY.match(line)
        if match:
            key = match.group("key")
            blocks.append((key[1:-1] if key[0] in "\"'" else key, [line]))
        elif blocks and (not line.strip() or line[0] in " \t-"):
            blocks[-1][1].append(line)
        else:
            blocks.append((None, [line]))
    pending = dict(changes)
    out: list[str] = []
    for key, block in blocks:
        if key is not None and key in pending:
            value = pending.pop(key)
            trailing: list[str] = []
            while len(block) > 1 and not block[-1].strip():
                trailing.insert(0, block.pop())
            if value is not None:
                out.extend(line + cr for line in _emit(key, value))
            out.extend(trailing)
        else:
            out.extend(block)
    for key, value in pending.items():
        if value is not None:
            out.extend(line + cr for line in _emit(key, value))
    patched = bom + "\n".join([lines[0], *out, *lines[end:]])

    original, _ = split_front_matter(text, label)
    expected = {k: v for k, v in {**original, **changes}.items() if v is not None}
    try:
        got, _ = split_front_matter(patched, label)
    except PackageError:
        got = None
    if got != expected:
        front = [line + cr for key, value in expected.items() for line in _emit(str(key), value)]
        patched = bom + "\n".join([lines[0], *front, *lines[end:]])
    return patched


def __getattr__(name: str) -> Any:
    """``read_package`` and ``write_package`` live in ``skills.package``, ``Rejection`` and
    ``read_tree`` in ``skills.archive``; re-exported lazily here."""
    if name in ("read_package", "write_package"):
        from skills import package

        return getattr(package, name)
    if name in ("Rejection", "read_tree"):
        from skills import archive

        return getattr(archive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
