"""The repository explains itself: every relative link and every file path named in the README, bench/README.md
and docs/*.md points at something in the repository (documents kept outside it are named in plain text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_PATH = re.compile(r"`([\w.\-]+(?:/[\w.\-]+)+\.(?:md|py|sh|yaml|yml|json|toml|txt))`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to hyphens) and explicit
    ``<a id="...">`` ones (the generated configuration reference's)."""
    text = FENCE.sub("", doc.read_text())
    heads = re.findall(r"^#+\s+(.*?)\s*$", text, re.M)
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    return explicit | {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root) and path.exists()


def link_problems(doc: Path, root: Path = ROOT) -> list[str]:
    text = FENCE.sub("", doc.read_text())
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part) if path_part else doc
        if not _inside(root, dest):
            problems.append(f"{target}: no such file in the repository")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            problems.append(f"{target}: no heading #{fragment} in {dest.relative_to(root)}")
    for named in CODE_PATH.findall(text):
        if not any(_inside(root, base / named) for base in (root, doc.parent, root / "src", root / "src" / "fluxway")):
            problems.append(f"`{named}`: names a file that is not in the repository")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_named_files_resolve(doc: Path) -> None:
    assert link_problems(doc) == []


def test_the_checker_catches_a_link_out_of_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "operations.md").write_text("# Operations\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "SPEC.md").write_text("# outside the repository\n")
    doc = repo / "docs" / "probe.md"
    doc.write_text(
        "# Probe\n\nSee [the contract](../../shared/SPEC.md), [ok](operations.md), [here](#probe), "
        "[gone](#nowhere) and `shared/PERFORMANCE.md`.\n\n```\n[in a fence](nowhere.md)\n```\n"
    )
    assert link_problems(doc, repo.resolve()) == [
        "../../shared/SPEC.md: no such file in the repository",
        "#nowhere: no heading #nowhere in docs/probe.md",
        "`shared/PERFORMANCE.md`: names a file that is not in the repository",
    ]


def test_license_is_the_apache_2_text_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert 'license = {text = "Apache-2.0"}' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
