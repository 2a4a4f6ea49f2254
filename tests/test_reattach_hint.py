"""The re-attach hint is right (issue 21): after `wait=false` the printed command drops `wait=false` and any
`attach=` already on the line, so pasting it waits for the sweep instead of detaching again."""
import shlex
from pathlib import Path

from conftest import PROBE, VERTEX_LOCAL, run_app


def test_the_pasted_reattach_command_waits_for_the_sweep(tmp_path: Path) -> None:
    args = ["-m", *VERTEX_LOCAL, "hydra.launcher.wait=false", "tag=0,1", "mode=hold", "hold_for=2", "hold_max_s=3",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    detached = run_app(PROBE, args, tmp_path)
    assert detached.returncode == 0, detached.stderr
    [line] = [ln for ln in (detached.stdout + detached.stderr).splitlines() if "re-attach:" in ln]
    command = shlex.split(line.split("re-attach:", 1)[1])
    assert "hydra.launcher.wait=false" not in command

    pasted = run_app(Path(command[1]), command[2:], tmp_path)  # `python my_app.py ...`, as the user pastes it

    output = pasted.stdout + pasted.stderr
    assert pasted.returncode == 0, output
    assert "not waiting" not in output, output
    assert sorted(p.name for p in (tmp_path / "rec").glob("*.end")) == ["0.end", "1.end"]


def test_the_reattach_command_drops_an_earlier_attach_in_any_form() -> None:
    from hydra_plugins.hydra_vertex_ai._launch import _rerun_args

    argv = ["app.py", "-m", "x=1,2", "++hydra.launcher.attach=old-sweep", "+hydra.launcher.wait=False",
            "hydra.launcher.max_parallel=2"]
    assert _rerun_args(argv) == ["app.py", "-m", "x=1,2", "hydra.launcher.max_parallel=2"]
