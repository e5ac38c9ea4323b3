"""Work done ahead of need: the evaluation compiled in the background, timing of a command."""

import time

import jax
import numpy as np
import pytest

from a3c_jax import Config
from a3c_jax.runs import timing
from a3c_jax.training import background, evaluation

SMALL = Config(hidden_sizes=(8,))


def test_evaluation_compiled_ahead_is_used_and_plays_the_same_episodes(key):
    future = evaluation.compile_evaluation(SMALL, num_episodes=3)
    params = evaluation.param_shapes(SMALL)
    params = jax.tree.map(lambda x: jax.random.normal(key, x.shape, x.dtype), params)
    _, program = future.result(timeout=300)
    assert evaluation._precompiled(SMALL, 3, True, (params, key)) is program
    ahead = evaluation.evaluate(SMALL, params, key, num_episodes=3)
    compiled_here = evaluation._make_evaluator(SMALL, 3, True)(params, key)
    np.testing.assert_array_equal(ahead, compiled_here)
    # Other shapes (here: 4 episodes, or other parameters) are not that program's.
    assert evaluation._precompiled(SMALL, 4, True, (params, key)) is None
    wider = jax.tree.map(lambda x: np.zeros((*x.shape[:-1], x.shape[-1] + 1), x.dtype), params)
    assert evaluation._precompiled(SMALL, 3, True, (wider, key)) is None


def test_background_work_hands_back_its_result_or_its_error():
    assert background.start(sum, [1, 2, 3]).result(timeout=10) == 6
    with pytest.raises(ZeroDivisionError):
        background.start(lambda: 1 / 0).result(timeout=10)


def test_phases_split_a_lap_into_its_measured_parts():
    phases = timing.Phases()
    assert phases.seconds.get("startup", 0.0) > 0.0  # this process's age (Linux)
    time.sleep(0.05)
    phases.lap("run", compile=0.02, train=0.01)
    assert phases.seconds["compile"] == 0.02 and phases.seconds["train"] == 0.01
    assert 0.015 < phases.seconds["run"] < 1.0  # the lap less its parts
    assert "compile 0.02 s" in phases.summary() and "(total " in phases.summary()
