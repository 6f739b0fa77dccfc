"""``make -C docs html`` without Sphinx: one clear error naming the fix, and the last site untouched."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_missing_sphinx_is_one_clear_error(tmp_path):
    build = tmp_path / "_build"
    (build / "html").mkdir(parents=True)
    (build / "html" / "index.html").write_text("the last good site")
    proc = subprocess.run(["make", "-C", str(DOCS), "html", f"SPHINXBUILD={sys.executable} -m no_such_sphinx",
                           f"BUILDDIR={build}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert 'pip install torch==2.13.0 -e ".[docs]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (build / "html" / "index.html").read_text() == "the last good site"
    assert not (build / "html.partial").exists()
