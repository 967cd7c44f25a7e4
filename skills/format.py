"""The Agent Skills package format (a ``SKILL.md`` folder) and safe reading of package trees.

A package is a folder ``NAME/`` holding:

* ``SKILL.md``: YAML front matter between ``---`` lines with only the keys ``name``,
  ``description``, ``license``, ``compatibility``, ``metadata`` (string map) and
  ``allowed-tools``; the Markdown body is the guidance (``## When to use``, ``## Steps``, ...);
* ``skill.json`` (ours): version, status, mode, scope, parameters, returns, tests, provenance,
  environment, tags, domain;
* ``scripts/run.py`` for executable skills: the program exposing ``run(**params)``.

Reading many packages at once (a folder tree or a zip) is in ``skills.archive``.

Skills travel as plain dicts shaped like ``kb.models.SkillCreate``.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from skills.errors import PackageError, SkillError

__all__ = [
    "FRONT_MATTER_KEYS",
    "MAX_DESCRIPTION",
    "SKILL_JSON_SCHEMA",
    "is_slug",
    "read_package",
    "slugify",
    "to_skill_md",
    "write_package",
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


def _cut_description(text: str) -> str:
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
        "description": _cut_description(str(skill["description"]).strip()),
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
    """Render a skill dict as the text of its ``SKILL.md``.

    Args:
        skill: a ``SkillCreate``-shaped mapping (``name`` and ``description`` required).

    Returns:
        Front matter (description cut to 1,024 characters at a sentence end; version, status,
        mode, domain and tags in ``metadata``) and a Markdown body: the whole description when it
        was cut, ``## When to use`` (scope), ``## Steps`` (numbered) and ``## Parameters``.
    """
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


def _skill_json(skill: Mapping[str, Any]) -> dict[str, Any]:
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
    return {
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


def write_package(skill: Mapping[str, Any], dest: Path) -> Path:
    """Write ``dest/NAME/`` (``SKILL.md``, ``skill.json``, ``scripts/run.py`` if executable).

    Args:
        skill: a ``SkillCreate``-shaped mapping.
        dest: the folder to write the package folder into (created if missing).

    Returns:
        The package folder. A stale ``scripts/run.py`` is removed for a guided skill.
    """
    text = to_skill_md(skill)
    meta = json.dumps(_skill_json(skill), indent=2, ensure_ascii=False, default=_jsonable)
    folder = Path(dest) / str(skill["name"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(text, encoding="utf-8")
    (folder / "skill.json").write_text(meta + "\n", encoding="utf-8")
    script = folder / "scripts" / "run.py"
    if skill.get("program"):
        script.parent.mkdir(exist_ok=True)
        script.write_text(str(skill["program"]), encoding="utf-8")
    elif script.exists():
        script.unlink()
    return folder


# -- reading --------------------------------------------------------------------------------------
def _read_text(path: Path, label: str, max_bytes: int) -> str:
    if path.is_symlink():
        raise PackageError(label, "is a symbolic link; links are not followed")
    size = path.stat().st_size
    if size > max_bytes:
        raise PackageError(label, f"is {size} bytes; the limit is {max_bytes}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PackageError(label, f"is not UTF-8 text ({exc.reason})") from exc


def _split_front_matter(text: str, label: str) -> tuple[dict[str, Any], str]:
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise PackageError(label, "does not start with YAML front matter (a '---' line)")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise PackageError(label, "front matter is not closed with a '---' line")
    try:
        front = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise PackageError(label, f"front matter is not valid YAML: {exc}") from exc
    if not isinstance(front, dict):
        raise PackageError(label, "front matter must be a YAML mapping")
    return front, "\n".join(lines[end + 1 :])


def _check_front(front: dict[str, Any], label: str) -> None:
    unknown = sorted(str(k) for k in front if k not in FRONT_MATTER_KEYS)
    if unknown:
        allowed = ", ".join(sorted(FRONT_MATTER_KEYS))
        raise PackageError(label, f"unknown front-matter key(s) {unknown}; allowed: {allowed}")
    for key in ("name", "description"):
        if not isinstance(front.get(key), str) or not front[key].strip():
            raise PackageError(label, f"front matter needs a non-empty string '{key}'")
    if len(front["description"]) > MAX_DESCRIPTION:
        raise PackageError(
            label,
            f"description is {len(front['description'])} characters; the limit is {MAX_DESCRIPTION}",
        )
    for key in ("license", "compatibility"):
        if key in front and not isinstance(front[key], str):
            raise PackageError(label, f"'{key}' must be a string")
    if len(front.get("compatibility") or "") > MAX_COMPATIBILITY:
        raise PackageError(label, f"'compatibility' is over {MAX_COMPATIBILITY} characters")
    tools = front.get("allowed-tools")
    if tools is not None and not (
        isinstance(tools, str)
        or (isinstance(tools, list) and all(isinstance(t, str) for t in tools))
    ):
        raise PackageError(label, "'allowed-tools' must be a string (or a list of strings)")
    meta = front.get("metadata")
    if meta is not None and not (
        isinstance(meta, dict)
        and all(isinstance(v, str | int | float | bool) for v in meta.values())
    ):
        raise PackageError(label, "'metadata' must be a map of strings to strings")


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


def read_package(
    folder: Path, *, origin: str | None = None, max_file_bytes: int = MAX_FILE_BYTES
) -> dict[str, Any]:
    """Read one package folder into a ``SkillCreate``-shaped dict.

    Args:
        folder: the package folder (its name must equal the skill name).
        origin: how to name the package in provenance and errors (default: the folder path).
        max_file_bytes: refuse any file of the package larger than this.

    Returns:
        The skill dict, always a ``draft``: a status written in ``skill.json`` or the front
        matter is ignored, since validation and approval are a curator's acts, not a package's
        claim. Without ``skill.json`` the version and domain come from the front-matter
        ``metadata`` when valid, and ``license``, ``compatibility``, ``allowed-tools`` and other
        metadata land in ``environment``.

    Raises:
        PackageError: naming the file and the problem.
    """
    folder = Path(folder)
    where = origin or str(folder)
    md_path = folder / "SKILL.md"
    if not md_path.exists() and (folder / "skill.md").exists():
        md_path = folder / "skill.md"
    label = f"{where}/{md_path.name}"
    if not md_path.is_file():
        raise PackageError(label, "is missing")
    front, body = _split_front_matter(_read_text(md_path, label, max_file_bytes), label)
    _check_front(front, label)
    name = front["name"].strip()
    if not is_slug(name):
        raise PackageError(label, f"name {name!r} is not a valid slug; try {slugify(name)!r}")
    if name != folder.name:
        raise PackageError(label, f"name {name!r} does not match the folder name {folder.name!r}")

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

    metadata = {str(k): str(v) for k, v in (front.get("metadata") or {}).items()}
    environment: dict[str, str] = {}
    for key in ("license", "compatibility", "allowed-tools"):
        value = front.get(key)
        if value:
            environment[key] = " ".join(value) if isinstance(value, list) else str(value)
    known_meta = {"version", "status", "mode", "domain", "tags"}
    environment.update({f"metadata.{k}": v for k, v in metadata.items() if k not in known_meta})
    version = metadata.get("version", "1")
    skill: dict[str, Any] = {
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

    json_path = folder / "skill.json"
    declared_mode = None
    if json_path.exists():
        jlabel = f"{where}/skill.json"
        try:
            extra = json.loads(_read_text(json_path, jlabel, max_file_bytes))
        except json.JSONDecodeError as exc:
            raise PackageError(jlabel, f"is not valid JSON: {exc}") from exc
        problems = sorted(
            f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in Draft202012Validator(SKILL_JSON_SCHEMA).iter_errors(extra)
        )
        if problems:
            raise PackageError(jlabel, "; ".join(problems))
        declared_mode = extra.pop("mode", None)
        extra.pop("status", None)  # a package never declares its own status: see the docstring
        skill.update(extra)
        skill["tests"] = [
            {"name": "test", "params": {}, "expect": None, "expect_error": False, **t}
            for t in skill["tests"]
        ]

    script = folder / "scripts" / "run.py"
    if script.exists():
        slabel = f"{where}/scripts/run.py"
        skill["program"] = _read_text(script, slabel, max_file_bytes)
        _check_program(skill["program"], slabel)
        skill["mode"] = "executable"
    if declared_mode and declared_mode != skill["mode"]:
        raise PackageError(
            f"{where}/skill.json",
            f"mode is {declared_mode!r} but the package "
            + ("has" if skill["program"] else "has no")
            + " scripts/run.py",
        )
    return skill


def __getattr__(name: str) -> Any:
    """``Rejection`` and ``read_tree`` live in ``skills.archive``; re-exported lazily here."""
    if name in ("Rejection", "read_tree"):
        from skills import archive

        return getattr(archive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
