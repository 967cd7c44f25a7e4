"""A skill package as a folder: every file kept with its bytes and mode, written back, hashed.

``read_package(folder, files=True)`` gives the skill dict of ``skills.format`` plus the package:

* ``skill_md``: the text of ``SKILL.md``, verbatim (front matter and body); ``skill_md_mode``;
* ``resources``: every other file as a ``Resource`` (``path``, ``data``, ``mode``, ``sha256``,
  ``size``), sorted by path, in any layout (``scripts/``, ``references/``, ``core/``, sibling
  files, binaries). ``skill.json`` and ``scripts/run.py`` are among them: they are interpreted
  into the skill's fields and also kept byte for byte;
* ``warnings``: each spec rule the package breaks but that does not stop it being read;
* ``digest``: ``package_digest`` of the package as read, to tell an unchanged re-import.

``package_files`` (and ``write_package``, which writes them) gives back the original files
untouched while the skill's content is what they say. When a curator changed the skill, the
author's body is never rewritten: only the changed front-matter keys (description, license,
compatibility, allowed-tools, metadata) are patched, and the project's fields go to
``skill.json``; a ``SKILL.md`` that we generated ourselves is regenerated. A skill with no
original ``SKILL.md`` (made through the SDK or mined) gets a generated package, as before.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

from skills.errors import PackageError, SkillError
from skills.format import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    cut_description,
    decode_text,
    dump_json,
    is_slug,
    patch_front_matter,
    render_skill_md,
    skill_from_text,
    skill_json,
    slugify,
    split_front_matter,
)

__all__ = [
    "CONTENT_KEYS",
    "PACKAGE_KEYS",
    "Resource",
    "check_path",
    "make_resource",
    "package_digest",
    "package_files",
    "read_package",
    "write_package",
]

SKILL_MD = "SKILL.md"
SKILL_JSON = "skill.json"
RUN_PY = "scripts/run.py"
DEFAULT_MODE = 0o644
CONTENT_KEYS = (
    "description",
    "scope",
    "parameters",
    "returns",
    "steps",
    "program",
    "mode",
    "environment",
    "tests",
    "tags",
    "domain",
)
"""The fields a package says; a skill whose fields all equal its package's is unchanged."""
PACKAGE_KEYS = ("skill_md", "skill_md_mode", "resources", "warnings", "digest")
"""The keys ``read_package(..., files=True)`` adds to the ``SkillCreate``-shaped dict."""
_FRONT_ENV = ("license", "compatibility", "allowed-tools")


class Resource(TypedDict):
    """One file of a package other than ``SKILL.md`` (in ``package_files``: any file)."""

    path: str
    data: bytes
    mode: int
    sha256: str
    size: int


_DRIVE = re.compile(r"^[A-Za-z]:")


def check_path(path: str) -> str:
    """``path`` if it is a safe relative POSIX path inside a package, else ``SkillError``.

    Refused: empty, absolute, a drive letter, backslashes, NUL, ``.``/``..``/empty parts, and
    ``SKILL.md`` itself (it is the package's ``skill_md``).
    """
    parts = path.split("/") if isinstance(path, str) else []
    if (
        not parts
        or "\\" in path
        or "\x00" in path
        or _DRIVE.match(path)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise SkillError(f"resource path {path!r} is not a relative path inside the package")
    if path == SKILL_MD:
        raise SkillError(f"resource path {path!r} is the package's SKILL.md, not a resource")
    return path


def make_resource(path: str, data: bytes, mode: int = DEFAULT_MODE) -> Resource:
    """A ``Resource`` for ``data`` at ``path`` (checked by ``check_path``).

    Args:
        path: POSIX path relative to the package folder (``scripts/x.py``).
        data: the file's bytes.
        mode: its permission bits (only ``0o777`` are kept: no setuid, setgid or sticky bit).
    """
    return _file(check_path(path), data, mode)


def _file(path: str, data: bytes, mode: int) -> Resource:
    data = bytes(data)
    return {
        "path": path,
        "data": data,
        "mode": int(mode) & 0o777,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def _as_resource(raw: Mapping[str, Any]) -> Resource:
    return make_resource(str(raw["path"]), raw["data"], int(raw.get("mode") or DEFAULT_MODE))


def _digest(files: Iterable[Resource]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda r: r["path"]):
        h.update(f"{f['path']}\0{f['mode']:o}\0{f['sha256']}\n".encode())
    return "sha256:" + h.hexdigest()


# -- reading --------------------------------------------------------------------------------------
def walk(root: Path) -> Iterator[Path]:
    """Every path under ``root`` (depth first, sorted), never following links."""
    for child in sorted(root.iterdir()):
        yield child
        if child.is_dir() and not child.is_symlink():
            yield from walk(child)


def _read_file(path: Path, label: str, max_bytes: int) -> bytes:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise PackageError(label, "is a symbolic link; links are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise PackageError(label, "is not a regular file")
    if info.st_size > max_bytes:
        raise PackageError(label, f"is {info.st_size} bytes; the limit is {max_bytes}")
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PackageError(label, f"is over {max_bytes} bytes; the limit is {max_bytes}")
    return data


def _collect(
    folder: Path, where: str, *, max_file_bytes: int, max_total_bytes: int, max_files: int
) -> list[Resource]:
    """Every file of the package folder, refusing links, special files and the caps."""
    found: list[Resource] = []
    total = 0
    for path in walk(folder):
        rel = path.relative_to(folder).as_posix()
        label = f"{where}/{rel}"
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            continue
        data = _read_file(path, label, max_file_bytes)
        total += len(data)
        if len(found) + 1 > max_files:
            raise PackageError(where, f"holds more than {max_files} files")
        if total > max_total_bytes:
            raise PackageError(where, f"is over {max_total_bytes} bytes")
        found.append(_file(rel, data, info.st_mode))
    return found


def read_package(
    folder: Path,
    *,
    origin: str | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
    files: bool = False,
) -> dict[str, Any]:
    """Read one package folder into a ``SkillCreate``-shaped dict.

    Args:
        folder: the package folder (its name should equal the skill name: a warning if not).
        origin: how to name the package in provenance and errors (default: the folder path).
        max_file_bytes: refuse any file of the package larger than this.
        max_total_bytes: with ``files``, refuse a package larger than this in all.
        max_files: with ``files``, refuse a package of more files than this.
        files: also return the package itself: ``skill_md``, ``skill_md_mode``, ``resources``,
            ``warnings`` and ``digest`` (see the module docstring). Off, the dict has only
            ``SkillCreate`` keys.

    Returns:
        The skill dict, always a ``draft``: a status written in ``skill.json`` or the front
        matter is ignored, since validation and approval are a curator's acts, not a package's
        claim. Without ``skill.json`` the version and domain come from the front-matter
        ``metadata`` when valid, and ``license``, ``compatibility``, ``allowed-tools`` and other
        metadata land in ``environment``.

    Raises:
        PackageError: naming the file and the problem: no SKILL.md, no front matter, invalid
            YAML, no name or description, a broken ``skill.json`` or program, a symbolic link,
            a special file, or a file or package over the limits.
    """
    folder = Path(folder)
    where = origin or str(folder)
    md_name = SKILL_MD
    if not (folder / SKILL_MD).exists() and (folder / "skill.md").exists():
        md_name = "skill.md"
    label = f"{where}/{md_name}"
    if not (folder / md_name).is_file():
        raise PackageError(label, "is missing")
    if files:
        everything = _collect(
            folder,
            where,
            max_file_bytes=max_file_bytes,
            max_total_bytes=max_total_bytes,
            max_files=max_files,
        )
        by_path = {f["path"]: f for f in everything}
        md = by_path.pop(md_name)
        raw = {p: f["data"] for p, f in by_path.items()}
        md_bytes = md["data"]
    else:
        md_bytes = _read_file(folder / md_name, label, max_file_bytes)
        raw = {
            rel: _read_file(folder / rel, f"{where}/{rel}", max_file_bytes)
            for rel in (SKILL_JSON, RUN_PY)
            if (folder / rel).exists() or (folder / rel).is_symlink()
        }
    text = decode_text(md_bytes, label)
    skill, warnings = skill_from_text(
        text,
        skill_json=raw.get(SKILL_JSON),
        run_py=raw.get(RUN_PY),
        where=where,
        folder_name=folder.name,
        md_name=md_name,
    )
    if not files:
        return skill
    if md_name != SKILL_MD:
        warnings.append(
            {"rule": "skill-md-name", "path": label, "detail": "written back as SKILL.md"}
        )
    resources = sorted(by_path.values(), key=lambda r: r["path"])
    skill["skill_md"] = text
    skill["skill_md_mode"] = md["mode"]
    skill["resources"] = resources
    skill["warnings"] = warnings
    skill["digest"] = _digest([{**md, "path": SKILL_MD}, *resources])
    return skill


# -- what a skill's package holds -----------------------------------------------------------------
def _content(skill: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``skill`` a package says, normalised for comparison."""
    program = skill.get("program") or None
    return {
        "description": str(skill.get("description") or "").strip(),
        "scope": skill.get("scope") or None,
        "parameters": dict(skill.get("parameters") or {"type": "object", "properties": {}}),
        "returns": dict(skill.get("returns") or {}),
        "steps": [str(s) for s in skill.get("steps") or []],
        "program": program,
        "mode": str(skill.get("mode") or ("executable" if program else "guided")),
        "environment": {str(k): str(v) for k, v in dict(skill.get("environment") or {}).items()},
        "tests": [
            {
                "name": t.get("name", "test"),
                "params": dict(t.get("params") or {}),
                "expect": t.get("expect"),
                "expect_error": bool(t.get("expect_error", False)),
            }
            for t in skill.get("tests") or []
        ],
        "tags": [str(t) for t in skill.get("tags") or []],
        "domain": skill.get("domain") or None,
    }


def _front_changes(
    original: str, said: Mapping[str, Any], skill: Mapping[str, Any]
) -> dict[str, Any]:
    """The front-matter keys to rewrite so that they say what ``skill`` now says."""
    changes: dict[str, Any] = {}
    description = str(skill.get("description") or "").strip()
    if description != said["description"]:
        changes["description"] = cut_description(description)
    old_env = said["environment"]
    new_env = {str(k): str(v) for k, v in dict(skill.get("environment") or {}).items()}
    for key in _FRONT_ENV:
        if old_env.get(key) != new_env.get(key):
            changes[key] = new_env.get(key)
    meta_keys = {k for k in (*old_env, *new_env) if k.startswith("metadata.")}
    if any(old_env.get(k) != new_env.get(k) for k in meta_keys):
        front, _ = split_front_matter(original, SKILL_MD)
        raw = front.get("metadata")
        kept = {
            str(k): str(v)
            for k, v in (raw.items() if isinstance(raw, dict) else ())
            if f"metadata.{k}" not in old_env and v is not None
        }
        kept.update({k.removeprefix("metadata."): v for k, v in new_env.items() if k in meta_keys})
        changes["metadata"] = kept or None
    return changes


def _generated(original: str, said: Mapping[str, Any]) -> bool:
    """Whether ``original`` is exactly the SKILL.md we would generate for what it says."""
    front, _ = split_front_matter(original, SKILL_MD)
    meta = front.get("metadata")
    status = meta.get("status", "draft") if isinstance(meta, dict) else "draft"
    try:
        return render_skill_md({**said, "status": status}) == original
    except SkillError:
        return False


def package_files(skill: Mapping[str, Any]) -> list[Resource]:
    """Every file of ``skill``'s package: ``SKILL.md`` first, then the others by path.

    Args:
        skill: a ``SkillCreate``-shaped mapping, optionally with ``skill_md``, ``skill_md_mode``
            and ``resources`` (as ``read_package(..., files=True)`` gives them; a resource needs
            only ``path``, ``data`` and ``mode``).

    Returns:
        While the skill's ``CONTENT_KEYS`` equal what its original files say (the version, status
        and provenance do not count): those files, byte for byte. Otherwise, or without an
        original ``SKILL.md``: ``SKILL.md`` (the author's, with only the changed front-matter keys
        patched; ours, regenerated), a new ``skill.json`` (keeping its mode), ``scripts/run.py``
        when the program changed, and every other resource untouched.

    Raises:
        SkillError: a name that is not a slug, no description, or an unsafe resource path.
    """
    name = str(skill.get("name", ""))
    if not is_slug(name):
        raise SkillError(f"skill name {name!r} is not a valid slug; try {slugify(name)!r}")
    resources: dict[str, Resource] = {}
    for raw in skill.get("resources") or []:
        res = _as_resource(raw)
        if res["path"] in resources:
            raise SkillError(f"skill {name!r} has two resources at {res['path']!r}")
        resources[res["path"]] = res
    original = skill.get("skill_md")
    md_mode = int(skill.get("skill_md_mode") or DEFAULT_MODE)
    before: dict[str, Any] | None = None
    if original is None:
        text = render_skill_md(skill)
    else:
        original = str(original)
        before, _ = skill_from_text(
            original,
            skill_json=resources[SKILL_JSON]["data"] if SKILL_JSON in resources else None,
            run_py=resources[RUN_PY]["data"] if RUN_PY in resources else None,
            where=name,
        )
        if _content(skill) == _content(before):
            md = _file(SKILL_MD, original.encode("utf-8"), md_mode)
            return [md, *sorted(resources.values(), key=_by_path)]
        if _generated(original, before):
            text = render_skill_md(skill)
        else:
            text = patch_front_matter(original, _front_changes(original, before, skill))
    said, _ = skill_from_text(text, where=name)
    meta = dump_json(skill_json(skill, said=said)).encode("utf-8")
    resources[SKILL_JSON] = make_resource(
        SKILL_JSON, meta, resources[SKILL_JSON]["mode"] if SKILL_JSON in resources else DEFAULT_MODE
    )
    program = skill.get("program") or None
    if before is None or program != before["program"]:
        if program:
            mode = resources[RUN_PY]["mode"] if RUN_PY in resources else DEFAULT_MODE
            resources[RUN_PY] = make_resource(RUN_PY, str(program).encode("utf-8"), mode)
        else:
            resources.pop(RUN_PY, None)
    md = _file(SKILL_MD, text.encode("utf-8"), md_mode)
    return [md, *sorted(resources.values(), key=_by_path)]


def _by_path(resource: Resource) -> str:
    return resource["path"]


def package_digest(skill: Mapping[str, Any]) -> str:
    """``sha256:HEX`` over the path, mode and bytes of every file of ``package_files(skill)``.

    Equal digests mean byte-identical packages: a store compares the digest of a package being
    imported (``read_package(..., files=True)["digest"]``) with ``package_digest`` of the stored
    latest version to report ``unchanged``.
    """
    return _digest(package_files(skill))


# -- writing --------------------------------------------------------------------------------------
def _write_file(folder: Path, rel: str, data: bytes, mode: int) -> None:
    target = folder.joinpath(*PurePosixPath(rel).parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(folder.resolve()):
        raise SkillError(f"{folder}/{rel}: a linked folder leads outside the package")
    if target.is_symlink() or target.is_file():
        target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode & 0o777)
    finally:
        os.close(fd)


def write_package(skill: Mapping[str, Any], dest: Path) -> Path:
    """Write ``dest/NAME/``: every file of ``package_files(skill)`` with its mode.

    Args:
        skill: a ``SkillCreate``-shaped mapping, optionally with the package keys of
            ``read_package(..., files=True)``.
        dest: the folder to write the package folder into (created if missing).

    Returns:
        The package folder. A stale ``skill.json`` or ``scripts/run.py`` that the package no
        longer holds is removed; other files already there are left alone.
    """
    files = package_files(skill)
    folder = Path(dest) / str(skill["name"])
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        _write_file(folder, f["path"], f["data"], f["mode"])
    held = {f["path"] for f in files}
    for rel in (SKILL_JSON, RUN_PY):
        stale = folder / rel
        if rel not in held and (stale.is_file() or stale.is_symlink()):
            stale.unlink()
    return folder
