"""`nohup` is honoured (issue 21): a launcher started with SIGHUP ignored keeps it ignored, so a logout does not
cancel its sweep; SIGTERM and a SIGHUP that was not ignored still cancel (tests/test_resilience.py)."""
import signal
import subprocess
import sys
from pathlib import Path

from conftest import PROBE, VERTEX_LOCAL, finish, wait_for

from hydra_plugins.hydra_vertex_ai._signals import Terminated, interrupts


def test_an_ignored_sighup_stays_ignored_and_sigterm_still_interrupts() -> None:
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
    with interrupts():  # not ignored: SIGHUP is Ctrl-C, as documented
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        try:
            handler(signal.SIGHUP, None)
        except Terminated as e:
            assert "SIGHUP" in str(e)
        else:
            raise AssertionError("SIGHUP did not interrupt")


def test_a_launcher_under_nohup_survives_a_logout(tmp_path: Path) -> None:
    # two jobs that hold until both have started (or 4 s): the SIGHUP comes while both run
    args = ["-m", *VERTEX_LOCAL, "tag=0,1", "mode=hold", "hold_for=2", "hold_max_s=4",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    # As nohup does: SIGHUP ignored when the launcher starts (an ignored signal stays ignored across exec). Set here
    # and not in a preexec_fn: this process runs the emulators' gRPC threads, and Python code between fork and exec
    # can deadlock on a lock one of them held (a CI run hung there and the app never started).
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        app = subprocess.Popen([sys.executable, str(PROBE), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    finally:
        signal.signal(signal.SIGHUP, before)
    try:
        wait_for(lambda: len(list((tmp_path / "rec").glob("*.json"))) == 2, 120, "both jobs to start")
    except AssertionError as e:
        app.kill()
        raise AssertionError(f"{e}; the launcher printed:\n{finish(app)}") from None
    app.send_signal(signal.SIGHUP)  # the terminal closed
    output = finish(app)

    assert app.returncode == 0, output
    assert "Interrupted" not in output, output
    assert sorted(p.name for p in (tmp_path / "rec").glob("*.end")) == ["0.end", "1.end"]
