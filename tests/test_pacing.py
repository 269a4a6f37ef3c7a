"""Adaptive coalescing: a process whose event loop lags gathers deltas for longer, within a cap."""

import asyncio
import time

import pytest

from conversations.relay import pacing


@pytest.fixture
def lag():
    """The process's measurement, restored after the test."""
    measured = pacing.loop_lag()
    before = measured.lag
    yield measured
    measured.lag = before


def test_an_idle_process_flushes_at_the_base_interval(lag, settings):
    settings.STREAM_FLUSH_INTERVAL, settings.STREAM_FLUSH_MAX_INTERVAL = 0.04, 0.15
    lag.lag = 0.0
    assert pacing.flush_interval() == 0.04


def test_the_interval_grows_with_the_lag_up_to_the_cap(lag, settings):
    settings.STREAM_FLUSH_INTERVAL, settings.STREAM_FLUSH_MAX_INTERVAL = 0.04, 0.15
    lag.lag = 0.02
    assert pacing.flush_interval() == pytest.approx(0.04 + pacing.LAG_FACTOR * 0.02)
    lag.lag = 5.0  # far past saturation: still bounded
    assert pacing.flush_interval() == 0.15


def test_a_spike_moves_the_smoothed_lag_part_way_and_quiet_brings_it_back(lag):
    lag.lag = 0.0
    lag.sample(0.1)
    assert 0 < lag.lag < 0.1
    for _ in range(60):
        lag.sample(0.0)
    assert lag.lag < 0.001


async def test_it_measures_a_loop_kept_busy_and_stops_when_nothing_runs(lag):
    busy = True
    lag.ensure_running(busy=lambda: busy)
    await asyncio.sleep(pacing.PERIOD * 2)
    for _ in range(5):
        time.sleep(0.1)  # noqa: ASYNC251 -- the point: the loop is blocked, each timer fires late
        await asyncio.sleep(0)
    assert lag.lag > 0.03
    busy = False
    await asyncio.sleep(pacing.PERIOD * 3)
    assert lag.lag == 0.0  # the measurement ended with the last generation
