"""The docs a newcomer reads: a front page under 150 lines whose links all resolve, and the
guides in docs/ built by mkdocs in strict mode (a broken link or a page left out of the
navigation fails the build)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_a_front_page_whose_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((ROOT / link).exists() for link in local), local
    # The two commands a newcomer runs first, exactly as CI runs them (.ci/run).
    assert 'pip install -e ".[host]" && edgetl quickstart' in text
    assert 'pip install -e ".[host,dev]" && pytest -q' in text


def test_the_sample_images_the_front_page_predicts_on_are_shipped() -> None:
    from PIL import Image

    for name in ("digit-7.png", "digit-3.png"):
        with Image.open(ROOT / "docs" / "data" / name) as image:
            assert image.size == (10, 10)  # the built-in digits' rendering


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    if shutil.which("mkdocs") is None and not _importable("mkdocs"):
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]' installs it)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "guard" / "index.html").is_file()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
