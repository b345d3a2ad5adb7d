"""The README's DD-Ranking-style script (the ```python block of its "## Python" section) runs as
written and prints DD-Ranking's LRS keys."""

import os
import pathlib
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_script() -> str:
    text = README.read_text()
    section = text[text.index("\n## Python\n"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```\n", start)]


def test_readme_script_runs_as_written(tmp_path):
    script = readme_script()
    assert "from ddr_fast.metrics import LabelRobustScoreHard" in script
    env = dict(os.environ, DDR_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    for key in ["hard_label_recovery_mean", "improvement_over_random_std", "label_robust_score_mean"]:
        assert f"'{key}'" in out.stdout, out.stdout
