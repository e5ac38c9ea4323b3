"""Sweeps and tuning (`a3c_jax.sweeps.grid`, `a3c_jax.sweeps.tune`): one compiled program for many
settings x seeds, equal to plain training of each; static fields refused before any compile."""

import json
import math

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax.cli import main
from a3c_jax.config import ConfigError
from a3c_jax.runs import metrics_log
from a3c_jax.sweeps import grid as sw

TINY = {"env_name": "CartPole-v1", "total_timesteps": 2048}


def _max_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize(
    ("fields", "space"),
    [
        ({"algo": "a2c"}, {"lr": [1e-3, 5e-3], "max_grad_norm": [0.5, math.inf]}),
        ({"algo": "nstep_da2c"}, {"gamma": [0.9, 0.99], "ent_coef": [0.0, 0.05]}),
        ({"algo": "ac_replay"}, {"reward_scale": [0.5], "vf_coef": [0.25, 1.0]}),
        ({"recurrent": "gru", "recurrent_size": 16}, {"lr": [1e-3, 5e-3], "gae_lambda": [0.9]}),
    ],
)
def test_sweep_equals_plain_training_of_each_setting(fields, space):
    config = a3c_jax.Config(**TINY, **fields)
    key = jax.random.PRNGKey(7)
    result = sw.sweep(config, space, num_seeds=2, key=key, episodes=0, batch_size=3)
    n = len(sw.grid(space))
    assert jax.tree.leaves(result.params)[0].shape[:2] == (n, 2)
    keys = jax.random.split(key, 2)
    finals = []
    for i, j in [(0, 1), (n - 1, 0)]:  # the first and the last (padded) batch
        plain = a3c_jax.jit_train(config.replace(**result.settings[i]))(keys[j])
        mine = jax.tree.map(lambda x, i=i, j=j: x[i, j], (result.params, result.metrics))
        assert _max_difference((plain.params, plain.metrics), mine) < 1e-4
        finals.append(jax.tree.leaves(mine[0]))
    # the settings really differ (the comparison above could not pass by ignoring them)
    assert _max_difference(finals[0], finals[1]) > 1e-3


def test_sweep_runs_every_batch_with_one_compile():
    config = a3c_jax.Config(**TINY)
    compiled = sw.compile_sweep(config, ["lr"], batch_size=2, num_seeds=1, episodes=3)
    key = jax.random.PRNGKey(0)
    sw.seed_keys(key, 1)  # its own small programs, compiled before counting
    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    out = sw.run_batches(compiled, [{"lr": v} for v in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3)], key)
    assert compiles == []  # three batches, no compile
    assert out.greedy_return.shape == (5, 1) and np.all(np.isfinite(out.greedy_return))
    assert len({float(x) for x in np.asarray(out.metrics.total_loss)[:, 0, -1]}) == 5


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"num_envs": [4, 8]}, "num_envs.*changes shapes"),
        ({"hidden_sizes": [1]}, "hidden_sizes"),
        ({"rmsprop_decay": [0.9]}, "optimizer='adam'"),
        ({"no_such": [1]}, "no_such.*not a Config field"),
        ({"lr": [1e-3, -1.0]}, r"setting 1 \{'lr': -1.0\}.*lr"),
        ({"lr": []}, "no settings"),
    ],
)
def test_bad_spaces_are_refused_before_compiling(space, match):
    with pytest.raises(ConfigError, match=match):
        sw.sweep(a3c_jax.Config(**TINY), space)


def test_asynchronous_algorithms_say_they_cannot_sweep():
    with pytest.raises(ConfigError, match="does not train as one jitted program"):
        sw.check_names(a3c_jax.Config(algo="a3c"), ["lr"])


def test_batch_size_fits_the_budget_and_pads_least():
    assert sw.choose_batch_size(24, 100, 10_000) == 24
    assert sw.choose_batch_size(24, 100, 1_000) == 8  # 10 fit: 3 batches of 8, not 10+10+4
    assert sw.choose_batch_size(5, 10**9, 1) == 1
    per = sw.output_bytes(a3c_jax.Config(**TINY), ["lr"], num_seeds=4, episodes=5)
    assert per > 4 * 32 * 12 * 4  # at least the seeds' metrics


def test_sweep_command_writes_a_folder_train_can_use(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main.main(
        ["sweep", "--set", "total_timesteps=1024", "--grid", "lr=1e-3,4e-3", "ent_coef=0,0.02",
         "--num-seeds", "2", "--episodes", "3", "--threshold", "20", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "compile" in printed and "**best**" in printed
    info = json.loads((out / "sweep.json").read_text())
    assert len(info["settings"]) == 4 and info["num_seeds"] == 2
    metrics = metrics_log.read_metrics(out / "settings" / "003")
    assert set(np.unique(metrics["seed"])) == {0.0, 1.0}
    assert np.all(np.diff(metrics["env_steps"][metrics["seed"] == 0]) > 0)
    table = (out / "table.csv").read_text().splitlines()
    assert len(table) == 5 and "steps_to_threshold" in table[0]
    assert (out / "sweep.png").stat().st_size > 1000
    best = json.loads((out / "best.json").read_text())
    assert best["lr"] in (1e-3, 4e-3) and best["total_timesteps"] == 1024
    assert main.main(["train", "--config", str(out / "best.json"), "--dry-run"]) == 0
    # a second sweep never writes into the first one's folder
    assert main.main(["sweep", "--grid", "lr=1e-3", "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_sweep_command_refuses_a_static_field_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    code = main.main(["sweep", "--grid", "n_steps=4,8", "--out", str(out)])
    assert code == 2 and "n_steps" in capsys.readouterr().err
    assert not out.exists()


def test_tune_runs_rounds_and_resumes(tmp_path, capsys):
    pytest.importorskip("optuna", reason="the optuna extra is not installed")
    out = tmp_path / "tune"
    base = ["tune", "--set", "total_timesteps=1024", "--batch", "2", "--num-seeds", "2",
            "--episodes", "2", "--space", "lr=1e-4:1e-2:log", "ent_coef=0:0.05"]  # fmt: skip
    assert main.main([*base, "--trials", "3", "--out", str(out)]) == 0
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[0].startswith("trial,state,value")
    assert main.main(["tune", "--trials", "5", "--resume", str(out)]) == 0
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 5
    settings = [tuple(r.split(",")[3:]) for r in rows[1:]]
    assert len(set(settings)) == 5  # the resumed sampler asked new settings
    printed = capsys.readouterr().out
    assert printed.count("round ") == 3
    best = json.loads((out / "best.json").read_text())
    assert 1e-4 <= best["lr"] <= 1e-2 and best["total_timesteps"] == 1024
    assert main.main(["tune", "--resume", str(tmp_path)]) == 2  # holds no study
