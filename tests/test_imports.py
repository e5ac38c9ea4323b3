"""Start-up: `import a3c_jax` and `a3c-jax train --help` import only what they use, and gymnax's
environments are created from their own modules (checked in fresh processes, not timed)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from a3c_jax import envs

# Libraries that nothing at start-up needs: plotting, video, TensorBoard and gymnax's registry
# of every environment family (which imports seaborn through gymnax.environments.misc.pong).
HEAVY = (
    "seaborn",
    "pandas",
    "matplotlib",
    "scipy",
    "PIL",
    "tensorboardX",
    "rich",
    "gymnax",
    "gymnasium",
    "flax",
    "optax",
    "brax",  # an optional backend: imported only for "brax:<name>" environments
    "mujoco",
)


def _modules_after(code: str, env: dict[str, str] | None = None) -> dict:
    """Runs `code` in a fresh interpreter (`env`: variables set or, as None, unset), which
    prints a JSON object as its last line."""
    variables = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for name, value in (env or {}).items():
        variables.pop(name, None) if value is None else variables.update({name: value})
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=variables,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in prefixes or m.startswith(prefixes))


def test_import_and_help_load_no_heavy_module():
    found = _modules_after(
        "import json, sys, runpy\n"
        "import a3c_jax\n"
        "after_import = sorted(sys.modules)\n"
        "sys.argv = ['a3c-jax', 'train', '--help']\n"
        "try:\n"
        "    runpy.run_module('a3c_jax', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print(json.dumps({'import': after_import, 'help': sorted(sys.modules)}))"
    )
    assert "jax" in found["import"] and "a3c_jax.cli.main" in found["help"]  # the check can fail
    assert _loaded(found["import"], HEAVY) == []
    assert _loaded(found["help"], HEAVY) == []


def test_an_environment_imports_its_own_module_only_and_gymnax_still_works():
    found = _modules_after(
        "import json, sys\n"
        "from a3c_jax import envs\n"
        "spec = envs.make_env('Breakout-MinAtar')\n"
        "envs.make_env('CartPole-v1')\n"
        "loaded = sorted(sys.modules)\n"
        "import gymnax\n"  # the whole package afterwards: same classes, same registry
        "env, params = gymnax.make('Breakout-MinAtar')\n"
        "cartpole = gymnax.environments.classic_control.cartpole.CartPole\n"
        "print(json.dumps({'loaded': loaded, 'registered': list(gymnax.registered_envs),\n"
        "    'same_class': type(env) is type(spec.env)\n"
        "        and cartpole is type(envs.make_env('CartPole-v1').env)}))"
    )
    gymnax_modules = [m for m in found["loaded"] if m.startswith("gymnax")]
    assert "gymnax.environments.minatar.breakout" in gymnax_modules
    assert not [m for m in gymnax_modules if "misc" in m or "bsuite" in m or "asterix" in m]
    assert "gymnax.registration" not in gymnax_modules
    assert _loaded(found["loaded"], ("seaborn", "pandas", "matplotlib", "scipy")) == []
    assert found["same_class"]
    # a3c_jax's own table of names is gymnax's registry, name for name.
    assert sorted(found["registered"]) == sorted(envs.GYMNAX_ENVS)


@pytest.mark.parametrize(
    "name", ["Catch-bsuite", "SimpleBandit-bsuite", "Asterix-MinAtar", "FourRooms-misc"]
)
def test_environments_of_every_family_reset_and_step(name, key):
    spec = envs.make_env(name)

    def reset_and_step(key):
        carry = envs.reset(spec, key, 3)
        return envs.step(spec, key, carry, jnp.zeros((3, *spec.action_shape), jnp.int32))

    carry, transition = jax.eval_shape(reset_and_step, key)  # traced, not compiled
    assert carry.obs.shape == (3, *spec.obs_shape) and transition.reward.shape == (3,)


def test_unknown_name_suggests_close_matches():
    message = envs.unknown_env_message("Cartpole-v1")
    assert "did you mean 'CartPole-v1'" in message
    assert envs.unknown_env_message("CartPole-v1") is None
    with pytest.raises(ValueError, match="not a registered gymnax environment"):
        envs.make_gymnax("NoSuchEnv-v0")


@pytest.mark.parametrize(
    "setup, env, inline",
    [
        ("", None, True),  # a3c_jax's choice: host runs' per-step calls run inline
        ("", "true", False),  # the user's JAX_CPU_ENABLE_ASYNC_DISPATCH wins
        ("import jax; jax.numpy.ones(1); ", None, False),  # the backend was up: left alone
    ],
)
def test_the_command_runs_cpu_computations_inline_unless_the_user_or_the_backend_decided(
    setup, env, inline
):
    # The flag JAX's CPU client reads when it is made (at the first computation); the
    # `a3c-jax` command calls `prefer_inline_dispatch` first thing (`cli.main.run`).
    code = (
        f"import json; {setup}import a3c_jax; from a3c_jax.training import xla; "
        "xla.prefer_inline_dispatch(); from jax._src import xla_bridge; "
        "print(json.dumps({'async': xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))"
    )
    found = _modules_after(code, {"JAX_CPU_ENABLE_ASYNC_DISPATCH": env})
    assert found["async"] is (not inline)


def test_import_changes_nothing_in_the_process():
    """`import a3c_jax` leaves JAX's dispatch as JAX sets it and joins no multi-process run,
    even with a launcher's variables set (the `a3c-jax` command joins it, not the import)."""
    code = (
        "import json, jax; from jax._src import xla_bridge; "
        "before = xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value; import a3c_jax; "
        "a3c_jax.train; a3c_jax.evaluate; "  # the front door's module too
        "print(json.dumps({'same': xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value == before, "
        "'joined': jax.distributed.is_initialized()}))"
    )
    launcher = {
        "A3C_JAX_COORDINATOR": "127.0.0.1:1",  # nothing listens there
        "A3C_JAX_NUM_PROCESSES": "2",
        "A3C_JAX_PROCESS_ID": "1",
        "A3C_JAX_INIT_TIMEOUT": "1",
        "JAX_CPU_ENABLE_ASYNC_DISPATCH": None,
    }
    found = _modules_after(code, launcher)
    assert found == {"same": True, "joined": False}
