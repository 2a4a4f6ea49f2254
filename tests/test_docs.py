"""The README documents what the code does: its config reference is regenerated from config.py and compared."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_matches_config_py() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "config_reference.py")], capture_output=True, text=True, check=True
    ).stdout
    assert "`job.accelerator_type`" in generated and "`snapshot.max_size_mb`" in generated
    assert generated in (ROOT / "README.md").read_text(), "README is stale: run tools/config_reference.py"


def test_readme_quick_start_has_exactly_the_two_make_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick_start.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
