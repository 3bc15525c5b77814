"""README.md as a new user reads it: every Python example runs as written from the repository root, the
quick-start block that CI runs is unchanged, and the install advice (a virtual environment first, several
extras in one build) is there and names only extras that exist."""

import hashlib
import os
import re
import runpy
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICKSTART_SHA256 = "e8dbc02e98062b3f574b353306a43dac910084b93d9af6b4eaa245e374f5562b"
"""SHA-256 of the lines between the quickstart markers (what ``.ci/run`` executes); changing them changes CI."""


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def _blocks(lang: str):
    return re.findall(rf"^```{lang}\n(.*?)^```", _readme(), flags=re.S | re.M)


PYTHON_BLOCKS = _blocks("python")


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_examples_run_as_written_from_the_repository_root(index, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(PYTHON_BLOCKS[index])
    runpy.run_path(str(script), run_name="__main__")  # any exception fails the test, traceback included


def test_the_readme_has_python_examples_that_use_the_bundled_photo():
    assert len(PYTHON_BLOCKS) >= 2
    assert all('"photo.jpg"' not in b for b in PYTHON_BLOCKS)  # the sample photo is examples/photo.jpg
    assert any("examples/photo.jpg" in b for b in PYTHON_BLOCKS)


def test_quick_start_block_is_unchanged():
    text = _readme()
    block = text[text.index("<!-- quickstart:begin -->"):text.index("<!-- quickstart:end -->")]
    assert hashlib.sha256(block.encode()).hexdigest() == QUICKSTART_SHA256, block


def test_install_advice_venv_first_and_several_extras_in_one_build():
    text = _readme()
    assert "python3 -m venv" in text
    extras = set(metadata.metadata("gazecrop").get_all("Provides-Extra") or [])
    lines = [ln for b in _blocks("bash") for ln in b.splitlines()]
    named = [m.split(",") for ln in lines for m in re.findall(r'pip install [^\n]*?"\.\[([a-z,]+)\]"', ln)]
    assert any(len(n) >= 2 for n in named), "no install line with several extras"
    assert {e for n in named for e in n} <= extras
