"""Safe reading of many skill packages from a folder tree or a ``.zip`` file.

Symbolic links (in the tree or as zip members), ``..`` or absolute member paths (zip slip),
files over a size limit, zip members that expand more than ``MAX_RATIO`` times their compressed
size, and trees over a file-count or total-size limit are refused; a package holding a refused
file is skipped; one bad package never stops the others. Zip members keep their Unix file modes.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from skills.errors import PackageError
from skills.format import MAX_FILE_BYTES, MAX_FILES, MAX_RATIO, MAX_TOTAL_BYTES, is_slug
from skills.package import DEFAULT_MODE, read_package, walk

__all__ = ["Rejection", "read_tree"]


_RATIO_FLOOR = 1 << 16  # small members may compress well (a file of one repeated byte)


@dataclass(frozen=True)
class Rejection:
    """A file or package that ``read_tree`` refused, and why."""

    path: str
    reason: str


@dataclass
class _Scan:
    bad: list[tuple[PurePosixPath, str]]
    rejections: list[Rejection]
    stopped: bool = False


def _scan_folder(
    root: Path, label: str, *, max_file_bytes: int, max_total_bytes: int, max_files: int
) -> _Scan:
    scan = _Scan(bad=[], rejections=[])
    total = count = 0
    for path in walk(root):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        shown = f"{label}/{rel}"
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            scan.bad.append((rel, "is a symbolic link"))
            scan.rejections.append(Rejection(shown, "symbolic links are not allowed"))
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            scan.bad.append((rel, "is not a regular file"))
            scan.rejections.append(Rejection(shown, "not a regular file"))
            continue
        count += 1
        size = path.stat().st_size
        total += size
        if count > max_files or total > max_total_bytes:
            limit = f"{max_files} files" if count > max_files else f"{max_total_bytes} bytes"
            scan.rejections.append(Rejection(label, f"over the limit of {limit}; nothing read"))
            scan.stopped = True
            return scan
        if size > max_file_bytes:
            scan.bad.append((rel, f"is {size} bytes"))
            scan.rejections.append(Rejection(shown, f"{size} bytes; the limit is {max_file_bytes}"))
    return scan


def _extract_zip(
    archive: Path, dest: Path, *, max_file_bytes: int, max_total_bytes: int, max_files: int
) -> _Scan:
    """Extract the safe members of ``archive`` into ``dest``; record the unsafe ones."""
    scan = _Scan(bad=[], rejections=[])
    label = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        scan.rejections.append(Rejection(label, f"not a readable zip file: {exc}"))
        scan.stopped = True
        return scan
    with zf:
        infos = zf.infolist()
        if sum(not i.is_dir() for i in infos) > max_files:
            scan.rejections.append(Rejection(label, f"holds more than {max_files} files"))
            scan.stopped = True
            return scan
        seen: set[str] = set()
        total = 0
        for info in infos:
            raw = info.filename
            shown = f"{label}!{raw}"
            rel = PurePosixPath(raw.replace("\\", "/"))
            reason = None
            if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
                reason = "absolute or non-POSIX member path"
            elif ".." in rel.parts:
                reason = "member path contains '..'"
            elif stat.S_ISLNK(info.external_attr >> 16):
                reason = "symbolic links are not allowed"
            elif info.flag_bits & 0x1:
                reason = "encrypted members are not supported"
            elif raw in seen:
                reason = "duplicate member name"
            elif info.file_size > max_file_bytes:
                reason = f"{info.file_size} bytes; the limit is {max_file_bytes}"
            elif info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                ratio = info.file_size // max(info.compress_size, 1)
                reason = f"expands {ratio} times its compressed size; the limit is {MAX_RATIO}"
            seen.add(raw)
            if reason:
                scan.bad.append((rel, reason))
                scan.rejections.append(Rejection(shown, reason))
                continue
            target = dest.joinpath(*rel.parts)
            if not target.resolve().is_relative_to(dest.resolve()):
                scan.bad.append((rel, "escapes the archive root"))
                scan.rejections.append(Rejection(shown, "member path escapes the archive root"))
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            written = 0
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 16):
                        written += len(chunk)
                        total += len(chunk)
                        if written > max_file_bytes or total > max_total_bytes:
                            break
                        out.write(chunk)
            except (zipfile.BadZipFile, NotImplementedError, EOFError, zlib.error, OSError) as exc:
                scan.bad.append((rel, "could not be extracted"))
                scan.rejections.append(Rejection(shown, f"could not be extracted: {exc}"))
                continue
            if total > max_total_bytes:
                scan.rejections.append(
                    Rejection(label, f"expands past {max_total_bytes} bytes; nothing read")
                )
                scan.stopped = True
                return scan
            if written > max_file_bytes:
                target.unlink()
                scan.bad.append((rel, "larger than declared"))
                scan.rejections.append(Rejection(shown, f"over {max_file_bytes} bytes"))
                continue
            # a member's Unix mode travels with it (kept readable so the package can be read)
            mode = (info.external_attr >> 16) & 0o777 if info.create_system == 3 else 0
            os.chmod(target, (mode or DEFAULT_MODE) | 0o400)
    return scan


def _packages(root: Path, scan: _Scan, label: str, **options: Any) -> list[dict[str, Any]]:
    found = sorted(
        {p.parent for p in walk(root) if p.name in ("SKILL.md", "skill.md") and p.is_file()}
    )
    skills = []
    for folder in found:
        rel = PurePosixPath(folder.relative_to(root).as_posix())
        shown = f"{label}/{rel}" if rel.parts else label
        tainted = [
            (bad, why) for bad, why in scan.bad if bad == rel or rel in bad.parents or not rel.parts
        ]
        if tainted:
            bad, why = tainted[0]
            scan.rejections.append(Rejection(f"{shown}/SKILL.md", f"package skipped: {bad} {why}"))
            continue
        try:
            skills.append(read_package(folder, origin=shown, **options))
        except PackageError as exc:
            scan.rejections.append(Rejection(exc.path, exc.reason))
        except OSError as exc:
            scan.rejections.append(Rejection(shown, f"could not be read: {exc}"))
    return skills


def read_tree(
    root: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
    files: bool = False,
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Read every ``SKILL.md`` package under a folder or inside a ``.zip`` file.

    Symbolic links, ``..`` or absolute member paths, files over ``max_file_bytes``, and a tree
    over ``max_files`` files or ``max_total_bytes`` bytes are refused; a package holding a refused
    file is skipped; one bad package never stops the others. Front matter is read with
    ``yaml.safe_load``.

    Args:
        root: a folder (itself a package, or holding packages at any depth) or a ``.zip`` file.
        max_file_bytes, max_total_bytes, max_files: the limits (of one file, of the whole tree).
        files: give each skill its package too (``skill_md``, ``resources``, ``warnings``,
            ``digest``...: see ``skills.package.read_package``); off, only ``SkillCreate`` keys.

    Returns:
        (skill dicts, rejections), each rejection naming the file and the reason. A package that
        breaks only spec rules (say, a description over 1,024 characters) is read; with
        ``files`` its ``warnings`` name each rule.
    """
    root = Path(root)
    options: dict[str, Any] = {
        "max_file_bytes": max_file_bytes,
        "max_total_bytes": max_total_bytes,
        "max_files": max_files,
        "files": files,
    }
    if root.is_symlink():
        return [], [Rejection(str(root), "is a symbolic link; links are not followed")]
    if root.is_file() and root.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="skills-zip-") as tmp:
            stem = root.stem if is_slug(root.stem) else "package"
            dest = Path(tmp) / stem
            dest.mkdir()
            scan = _extract_zip(
                root,
                dest,
                max_file_bytes=max_file_bytes,
                max_total_bytes=max_total_bytes,
                max_files=max_files,
            )
            if scan.stopped:
                return [], scan.rejections
            skills = _packages(dest, scan, root.name, **options)
        return skills, scan.rejections
    if not root.is_dir():
        return [], [Rejection(str(root), "is neither a folder nor a .zip file")]
    scan = _scan_folder(
        root,
        str(root),
        max_file_bytes=max_file_bytes,
        max_total_bytes=max_total_bytes,
        max_files=max_files,
    )
    if scan.stopped:
        return [], scan.rejections
    return _packages(root, scan, str(root), **options), scan.rejections
