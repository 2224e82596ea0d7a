"""The node's frame-rate monitor: the rate at which images arrive, and when it warns (no ROS)."""

from __future__ import annotations

import pytest
from sim2real.runtime.frame_rate import LOW_RATE_FRACTION, FrameRate, rate_warning


def test_rate_over_the_window_and_over_the_start():
    rate = FrameRate(window_s=2.0)
    assert rate.rate(0.0) is None and rate.count == 0
    for index in range(61):                       # 30 Hz for 2 s, from t = 10 s
        rate.tick(10.0 + index / 30)
    assert rate.count == 61
    assert rate.rate(12.0) == pytest.approx(30.0, rel=0.02)
    early = FrameRate(window_s=5.0)
    for index in range(16):                       # only 0.5 s of 30 Hz so far: no underestimate
        early.tick(index / 30)
    assert early.rate(0.5) == pytest.approx(32.0, rel=0.05)


def test_rate_falls_when_frames_stop_and_recovers():
    rate = FrameRate(window_s=1.0)
    for index in range(30):
        rate.tick(index / 30)
    assert rate.rate(5.0) == 0.0                   # nothing in the last second
    for index in range(10):
        rate.tick(5.0 + index / 10)
    assert rate.rate(5.95) == pytest.approx(10.0, rel=0.05)
    with pytest.raises(ValueError, match="window_s"):
        FrameRate(window_s=0)


@pytest.mark.parametrize("measured, expected, warns", [
    (29.0, 30.0, False),
    (LOW_RATE_FRACTION * 30.0, 30.0, False),
    (LOW_RATE_FRACTION * 30.0 - 0.1, 30.0, True),
    (3.0, 30.0, True),
    (0.0, 30.0, True),
    (3.0, 0.0, False),        # the camera's rate is unknown
    (None, 30.0, False),      # no frame yet: the watchdog speaks for that
])
def test_rate_warning(measured, expected, warns):
    message = rate_warning(measured, expected)
    assert (message is not None) is warns
    if warns:
        assert f"{measured:.1f} Hz" in message and "30 Hz" in message and "Fast DDS" in message
