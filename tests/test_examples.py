"""Every script in ``examples/`` runs as a user would run it, and prints what it promises.

A script that needs the third-party data in ``../shared/data`` is skipped when that folder is absent
(recognised by its own exit message naming the data). A script that takes ``--limit`` is run on a
small slice so the suite stays fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
EXPECT = {
    "demo.py": [
        r"imported 12 trajectories",
        r"=== task: .*toaster",
        r"worked before:",
        r"failed before \(pitfalls\):",
        r"\[exp_\w+\]",
        r"strategy \(distilled\): Decision points: \(1\) \w+\(",
        r"lesson \(distilled\): Failing step \d+: \w+\(",
        r"Instead of refund_payment\(amount=40\.0 \[chosen\]\), do refund_payment\(amount=59\.0 \[get_order\]\)",
        r"Error at step \d+ \(\w+\): Error: ",
    ],
}

pytestmark = pytest.mark.slow


def test_there_are_examples() -> None:
    assert any(p.name == "demo.py" for p in EXAMPLES)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    args = [sys.executable, str(script)]
    source = script.read_text(encoding="utf-8")
    if "--limit" in source:
        args += ["--limit", "20"]
    if "--store" in source:
        args += ["--store", str(tmp_path / "store")]
    env = {**os.environ, "KB_STORE": str(tmp_path / "env-store")}
    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    if done.returncode != 0 and not DATA.exists() and "shared/data" in done.stdout + done.stderr:
        pytest.skip(f"{script.name} needs ../shared/data, which is absent")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    assert done.stdout.strip(), "an example should show something"
    for pattern in EXPECT.get(script.name, []):
        assert re.search(pattern, done.stdout), f"{pattern!r} not in the output of {script.name}"
