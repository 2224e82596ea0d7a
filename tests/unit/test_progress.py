"""Progress in a log: whole lines at an interval, no carriage returns; a bar only on a terminal."""

from __future__ import annotations

import pytest

from sim2real import progress


def _run(n: int = 5000, **kwargs) -> None:
    with progress.progress_bar(total=n, desc="datagen", unit="img", **kwargs) as bar:
        for _ in range(n):
            bar.update(1)


def test_a_log_gets_a_first_and_a_last_line_and_no_carriage_return(capsys, monkeypatch):
    monkeypatch.delenv("SIM2REAL_PROGRESS", raising=False)
    assert progress.mode() == "log"          # pytest's stderr is not a terminal
    _run()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("datagen: 0/5000 img") and "5000/5000 img (100%)" in lines[1]


def test_a_log_line_every_interval(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    _run(n=3)
    assert len(capsys.readouterr().err.splitlines()) == 5       # start, one per update, the last again


def test_a_postfix_on_every_step_still_gives_one_line_per_interval(capsys, monkeypatch):
    monkeypatch.delenv("SIM2REAL_PROGRESS", raising=False)
    with progress.progress_bar(total=500, desc="epoch 1/1", unit="batch") as bar:
        for i in range(500):
            bar.update(1)
            bar.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= 3 and "500/500 batch (100%)" in lines[-1] and "loss=0.002" in lines[-1]


def test_an_interrupted_run_still_ends_with_a_line(capsys, monkeypatch):
    monkeypatch.delenv("SIM2REAL_PROGRESS", raising=False)
    with progress.progress_bar(total=10, desc="eval", unit="ep") as bar:
        bar.update(4)
    assert capsys.readouterr().err.splitlines()[-1].startswith("eval: 4/10 ep")


def test_iterables_work_and_off_prints_nothing(capsys, monkeypatch):
    assert sum(progress.progress_bar(range(4), desc="epoch 1/1", unit="batch")) == 6
    assert "epoch 1/1: 4/4 batch" in capsys.readouterr().err
    monkeypatch.setenv("SIM2REAL_PROGRESS", "off")
    _run()
    assert capsys.readouterr().err == ""


def test_bar_on_request_and_bad_values(capsys, monkeypatch):
    monkeypatch.setenv("SIM2REAL_PROGRESS", "bar")
    _run(n=3)
    assert "\r" in capsys.readouterr().err
    monkeypatch.setenv("SIM2REAL_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="SIM2REAL_PROGRESS='fancy' is not one of bar, log, off"):
        progress.mode()
