"""The README and docs/ name only what exists: make targets, files, headings, source paths.

A reader who types a `make` target from the docs, follows a link or opens a file they name
must find it. Pure text checks (no subprocess), so they run in milliseconds.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
PACKAGE = PROJECT_ROOT / "src" / "credit_scoring"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
MAKE = re.compile(r"\bmake\s+(?:-\S+\s+)*([a-z][\w-]*)")
TARGET = re.compile(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A path a reader would open: in the repository, or a module of the package (`serving/http.py`).
PATH = re.compile(r"^(?:src|tests|bench|deploy|\.github)/\S*$|^[\w./-]+/[\w.-]+\.py$")
CODE_DIRS = ("src", "tests", "bench", "deploy", "monitoring")
MODULE = re.compile(r"^\w+\.py$")
PLACEHOLDER = re.compile(r"[<>*{}…$]")


def without_fences(text: str) -> str:
    return FENCE.sub("", text)


def code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where a command or a path is written."""
    return [m.group(0) for m in FENCE.finditer(text)] + [
        m.group(2) for m in CODE_SPAN.finditer(without_fences(text))
    ]


def make_targets_named(text: str) -> set[str]:
    return {m.group(1) for snippet in code(text) for m in MAKE.finditer(snippet)}


def makefile_targets(text: str) -> set[str]:
    return {t for t in TARGET.findall(text) if not t.startswith(".")}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(without_fences(text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path) -> list[str]:
    """Relative links of a markdown file that lead nowhere: no such file, or no such heading."""
    broken = []
    for target in LINK.findall(without_fences(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text())
        ):
            broken.append(target)
    return broken


@functools.cache
def module_names(root: Path) -> frozenset[str]:
    return frozenset(p.name for d in CODE_DIRS for p in (root / d).rglob("*.py"))


def missing_paths(text: str, root: Path, package: Path) -> set[str]:
    """Source paths written in code spans that exist neither in the repository nor the package;
    a bare module name (`shipper.py`) must be the name of some module of the repository."""
    modules = module_names(root)
    missing = set()
    for span in code(text):
        candidate = span.strip().split("::")[0].rstrip(",.:;")
        if "\n" in candidate or " " in candidate or PLACEHOLDER.search(candidate):
            continue
        if MODULE.match(candidate):
            exists = candidate in modules
        else:
            exists = not PATH.match(candidate) or any(
                (base / candidate).exists() for base in (root, package)
            )
        if not exists:
            missing.add(candidate)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_make_target_named_exists(doc: Path):
    targets = makefile_targets((PROJECT_ROOT / "Makefile").read_text())
    assert make_targets_named(doc.read_text()) - targets == set()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path):
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_source_path_named_exists(doc: Path):
    assert missing_paths(doc.read_text(), PROJECT_ROOT, PACKAGE) == set()


def test_the_readme_links_every_page_of_docs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(readme)}
    assert {p.name for p in DOCS[1:]} - linked == set()


def test_slugs_follow_github():
    assert slug("Who may call the scoring API (OIDC)") == "who-may-call-the-scoring-api-oidc"
    assert slug("5. Monitoring and the retraining loop") == "5-monitoring-and-the-retraining-loop"
    assert slug("`make run` at default size (first impression)") == (
        "make-run-at-default-size-first-impression"
    )
    assert slug("credit-scoring — a forkable template") == "credit-scoring--a-forkable-template"
    assert anchors("# Notes\n## Notes\n```bash\n# not a heading\n```\n") == {"notes", "notes-1"}


def test_the_checks_catch_what_is_broken(tmp_path: Path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Set-up, step by step\n")
    package = tmp_path / "src" / "pkg"
    (package / "serving").mkdir(parents=True)
    (package / "serving" / "http.py").write_text("")
    sample = tmp_path / "sample.md"
    sample.write_text(
        "# Sample\n\n"
        "Run `make run`, then `make -s tokn ROLE=advisor`; to make sure, read on.\n\n"
        "```bash\nmake serve PORT=3001\n# a comment, not a heading\n```\n\n"
        "[ok](other.md#set-up-step-by-step) [here](#sample) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [bad anchor](other.md#setup) [no heading](#a-comment-not-a-heading)\n\n"
        "`serving/http.py` `serving/routes.py` `src/credit_scoring/nowhere/` `pipelines/<name>/`\n"
        "`http.py` `store.py`\n"
    )
    text = sample.read_text()
    assert make_targets_named(text) == {"run", "tokn", "serve"}
    assert make_targets_named(text) - makefile_targets("run: data\n\tkedro run\nserve:\n") == {
        "tokn"
    }
    assert makefile_targets("X := 1\n.PHONY: run\nrun: data ## go\n") == {"run"}
    assert broken_links(sample) == ["missing.md", "other.md#setup", "#a-comment-not-a-heading"]
    assert missing_paths(text, tmp_path, package) == {
        "serving/routes.py",
        "src/credit_scoring/nowhere/",
        "store.py",
    }
