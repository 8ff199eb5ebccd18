"""The user-facing docs (README.md, docs/*.md) name only files that exist, stay inside the repository, read as a
guide rather than a work diary, and the README stays short.

Reads nothing but the repository's own files.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Set
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 200

#: Top-level folders of the repository: a token that starts with one of them names a repository path.
_ROOTS = ("slsg", "edge_runtime", "export", "calibration", "benchmarks", "scripts", "docs", r"\.ci")
_PATH = re.compile(r"(?<![\w./~-])(?:" + "|".join(_ROOTS) + r")/[\w./<>*…-]*")
#: A bare file name in backticks (`loading.py`, as in a list after a full path) must exist somewhere in the repository.
_BARE = re.compile(r"`(\w[\w-]*\.(?:py|sh))`")
_URL = re.compile(r"(?:https?|file)://\S+")
#: A path segment that stands for something (slsg/commands/X.py, <package>/tests/, …): check only what precedes it.
_PLACEHOLDER = re.compile(r"[<>*…]|^[A-Z][A-Z0-9_]*(?:\.\w+)?$")

_DIARY = [
    (re.compile(r"\bthis stop\b", re.I), "'this stop'"),
    (re.compile(r"\bstop \d+\b", re.I), "'stop N'"),
    (re.compile(r"\b(?:a later|an earlier|another|the previous|this) session\b", re.I), "a work session"),
    (re.compile(r"\bissues? #?\d+", re.I), "an issue number"),
    (re.compile(r"\bthe issue['’]s\b", re.I), "'the issue's'"),
    (re.compile(r"\bcommits?\b\W{0,3}(?:\w+\W{1,3}){0,3}?[0-9a-f]{7,40}\b", re.I), "a commit hash"),
    (re.compile(r"\b[0-9a-f]{7,40}\b\W{0,3}(?:\w+\W{1,3}){0,2}?commit\b", re.I), "a commit hash"),
    (re.compile(r"\bother engineers?\b", re.I), "'other engineers'"),
    (re.compile(r"\bcrash hunt\b", re.I), "'crash hunt'"),
    (re.compile(r"\bnew this\b", re.I), "'new this …'"),
    (re.compile(r"\bprevious round\b", re.I), "'previous round'"),
    (re.compile(r"\b(?:was|were) refused (?:before|earlier)\b|\bnow passes\b|\bpasses now\b", re.I),
     "a before/after story"),
    (re.compile(r"\bby the lead\b|\bthe lead's\b", re.I), "'the lead'"),
]


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.lru_cache(maxsize=1)
def _names_in_repo() -> frozenset[str]:
    """The name of every file in the repository's folders (virtual environments and caches aside)."""
    names = set()
    for _folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"node_modules", "__pycache__"}]
        names.update(files)
    return frozenset(names)


def missing_paths(text: str) -> list[str]:
    """Repository paths the text names that do not exist (URLs and placeholder segments aside)."""
    text = _URL.sub(" ", text)
    missing = []
    for token in _PATH.findall(text):
        token = token.rstrip(".,;:)")
        parts = []
        for part in token.split("/"):
            if not part or _PLACEHOLDER.search(part):
                break
            parts.append(part)
        if not (ROOT / "/".join(parts)).exists():
            missing.append(token)
    return missing


def missing_bare_names(text: str, names: Set[str]) -> list[str]:
    return [n for n in _BARE.findall(_URL.sub(" ", text)) if n not in names]


def diary_phrases(text: str) -> list[str]:
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for rx, what in _DIARY:
            m = rx.search(line)
            if m:
                found.append(f"line {lineno}: {what}: {m.group(0)!r}")
    return found


def outside_paths(text: str) -> list[str]:
    text = _URL.sub(" ", text)
    return [f"line {n}: {line.strip()[:100]}" for n, line in enumerate(text.splitlines(), 1) if "../" in line]


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert missing_paths(text) == [], f"{_rel(doc)} names paths that are not in the repository"
    assert missing_bare_names(text, _names_in_repo()) == [], f"{_rel(doc)} names files that are not in the repository"


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_no_doc_points_outside_the_repository(doc: Path) -> None:
    assert outside_paths(doc.read_text(encoding="utf-8")) == [], f"{_rel(doc)}: a path outside the repository"


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_docs_describe_the_product_not_how_the_work_went(doc: Path) -> None:
    assert diary_phrases(doc.read_text(encoding="utf-8")) == [], f"{_rel(doc)} tells how the work went"


def test_the_readme_is_a_short_guide() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it ≤ {README_MAX_LINES}, details in docs/"


def test_the_checks_catch_what_they_are_for() -> None:
    """Each check fails on the kind of text it exists for, and passes the look-alikes the docs legitimately hold."""
    assert missing_paths("see `slsg/model/heads.py` and docs/nowhere.md") == ["slsg/model/heads.py", "docs/nowhere.md"]
    assert missing_paths("`slsg/heads/fusion.py`, `slsg/commands/X.py`, `<package>/tests/`, "
                         "model.slsg/engines/, ~/slsg-edge/bin, https://x.org/docs/none.md, docs/data.md") == []
    assert missing_bare_names("`slsg/model/` (`network.py`, `heads.py`)", {"network.py"}) == ["heads.py"]
    assert outside_paths("the benchmark reads `../shared/datasets`") != []
    assert outside_paths("https://example.org/a/../b") == []
    for bad in ("new this stop", "a later session of 2026-12-03", "issue 18 measures", "at commit 861e609",
                "Other engineers' jobs", "the crash hunt", "in stop 12", "(the issue's 4.1×)"):
        assert diary_phrases(bad), bad
    for fine in ("slsg-edge threshold on the line's own good parts", "stop after 10 frames", "exit 3: stopped",
                 "sha256 of every file", "an ONNX Runtime session"):
        assert diary_phrases(fine) == [], fine
