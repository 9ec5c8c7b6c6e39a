"""Timing statistics: nearest-rank percentiles (always a measured value), median, spread."""

from __future__ import annotations

import pytest

from envkit.probe import stats


def test_nearest_rank_percentiles_of_ten_values() -> None:
    values = [float(v) for v in range(10, 0, -1)]  # unsorted input: 10..1
    assert stats.percentile(values, 50) == 5.0  # rank ceil(5.0) = 5
    assert stats.percentile(values, 90) == 9.0
    assert stats.percentile(values, 99) == 10.0  # rank ceil(9.9) = 10
    assert stats.percentile(values, 100) == 10.0
    assert stats.percentile(values, 1) == 1.0


def test_percentile_is_always_a_measured_value() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    for p in (10, 25, 50, 75, 99):
        assert stats.percentile(values, p) in values
    assert stats.percentile(values, 50) == 2.0  # no interpolation to 3.0


def test_p99_of_a_long_tail() -> None:
    values = [1.0] * 199 + [50.0]
    assert stats.percentile(values, 99) == 1.0  # rank 198
    assert stats.percentile(values, 99.6) == 50.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 0)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_median_odd_and_even() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_relative_spread() -> None:
    assert stats.relative_spread([10.0, 10.0, 10.0]) == 0.0
    assert stats.relative_spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)
    assert stats.relative_spread([0.0, 0.0]) == 0.0


def test_sample_stats_small_samples_use_the_range() -> None:
    assert stats.sample_stats([10.0, 12.0, 11.0]) == {
        "median": 11.0,
        "min": 10.0,
        "max": 12.0,
        "spread": pytest.approx(2 / 11),
        "n": 3,
    }


def test_sample_stats_four_or_more_use_the_interquartile_range() -> None:
    # Nearest-rank quartiles of 1..8: p25 = 2, p75 = 6; median 4.5. An outlier does not move it.
    table = stats.sample_stats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 800.0])
    assert table["spread"] == pytest.approx(4 / 4.5)
    assert (table["min"], table["max"], table["n"]) == (1.0, 800.0, 8)


def test_sample_stats_of_identical_samples_has_no_spread() -> None:
    assert stats.sample_stats([5.0] * 6)["spread"] == 0.0
    assert stats.sample_stats([0.0, 0.0])["spread"] == 0.0
    with pytest.raises(ValueError):
        stats.sample_stats([])
