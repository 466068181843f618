"""The user guide builds (mkdocs --strict: no broken link, no bad reference)
and its API reference really is generated from the docstrings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python",
                    reason="mkdocstrings[python] is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.mark.timeout(300)
def test_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    page = (site / "guide" / "api" / "index.html").read_text()
    import arrowshm

    for name in ["put", "get", "wait", "StreamReader", "to_pandas", "DatasetInfo"]:
        assert f'id="arrowshm.{name}"' in page, name
        first_line = (getattr(arrowshm, name).__doc__ or "").strip().splitlines()[0]
        words = re.sub(r"[`*:]", "", first_line).split()[:4]
        assert " ".join(words) in re.sub(r"<[^>]+>", "", page), (name, words)
    for error in ["NotFoundError", "WaitTimeoutError", "QuotaExceededError"]:
        assert error in page


@pytest.mark.timeout(300)
def test_guide_covers_concepts_recipes_and_links_the_reference_pages(site: Path) -> None:
    guide = (site / "guide" / "index.html").read_text()
    for target in ["../PERFORMANCE/", "../FORMAT/", "../SERVICE/", "../STREAMS/", "concepts/",
                   "recipes/", "notebooks/", "api/"]:
        assert f'href="{target}' in guide, target
    concepts = (site / "guide" / "concepts" / "index.html").read_text()
    for heading in ["Dataset", "Version", "Stream", "Namespace", "Lifecycle"]:
        assert f">{heading}<" in concepts, heading
    recipes = (site / "guide" / "recipes" / "index.html").read_text()
    for needle in ["--shm-size", "systemd", "ProcessPoolExecutor", "Ref"]:
        assert needle in recipes, needle


def test_readme_links_into_the_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/guide/index.md" in readme
    assert "notebooks/" in readme
