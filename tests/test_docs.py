"""The prose a reader follows: every relative link in the README, docs/, notes/, replications/ and the notebooks
points at a file of the checkout, and every runner command they show names its profile and passes the runner's
checks (notebooks, settings, data, store) as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import _scripts
import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "notes").glob("*.md")),
         *sorted((REPO / "replications").glob("*.md")), *sorted((REPO / "notebooks").glob("*.py"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    targets = (m.group(1).split("#")[0] for m in LINK.finditer(page.read_text(encoding="utf-8")))
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]


def test_the_pages_have_links_to_check():
    assert sum(len(_relative_links(p)) for p in PAGES) > 20


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_of_the_checkout(page):
    broken = [t for t in _relative_links(page) if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(REPO)} links to what is not there: {broken}"


def _commands() -> list[tuple[str, list[str]]]:
    """Every ``python paper_figures.py ...`` the pages show, joined across ``\\`` line ends, without comments."""
    found = []
    for page in [*(p for p in PAGES if p.suffix == ".md"), REPO / "paper_figures.py"]:
        text = re.sub(r"\\\n\s*", " ", page.read_text(encoding="utf-8"))
        for match in re.finditer(r"python paper_figures\.py([^`\n#]*)", text):
            found.append((f"{page.relative_to(REPO)}: {match.group(0).strip()}", shlex.split(match.group(1))))
    return found


def test_the_pages_show_runner_commands():
    assert len(_commands()) >= 8


@pytest.mark.parametrize("argv", [argv for _, argv in _commands()], ids=[where for where, _ in _commands()])
def test_every_runner_command_shown_names_its_profile_and_passes_the_runners_checks(argv, write_cifar, tmp_path,
                                                                                   monkeypatch, capsys):
    if "--list" in argv:
        assert _scripts.load("paper_figures.py").main(argv) == 0
        return
    assert "--profile" in argv, "without --profile a command runs at REPRO_PROFILE, else the hour-long cpu profile"
    write_cifar(tmp_path / "data")  # the paper profile's CIFAR-10, in its real format
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    argv = [a for a in argv if a != "--publish"]  # it would rewrite the committed outputs after a run
    assert _scripts.load("paper_figures.py").main([*argv, "--check"]) == 0, capsys.readouterr().err
    assert "nothing was run" in capsys.readouterr().out
