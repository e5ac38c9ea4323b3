"""The one table of algorithms: each declared once, with everything the rest of the library asks.

An entry names the algorithm, its builder (`make(config, spec, networks, optimizer) ->
Algorithm`, given as `"module:function"` and imported on first use, so that reading the table
imports no JAX), its default hyperparameters, whether its updates play whole episodes
(`episodic`) and which trainer runs it (`asynchronous`: `a3c_jax.train_async`'s threads, else the
pure `make_train`). `Config`, `presets`, the trainers and the command line all read this table;
adding an algorithm is one entry here and one builder module beside it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from a3c_jax.core.types import Algorithm

Builder = Callable[..., "Algorithm"]


class AlgorithmSpec(NamedTuple):
    """One algorithm, as declared in `REGISTRY`."""

    name: str
    builder: Builder | str | None  # "module:function" (imported on use); None: no pure trainer
    defaults: Mapping[str, Any]  # Config fields this algorithm sets (over `presets.DEFAULTS`)
    episodic: bool = False  # updates play one whole episode per environment (steps vary)
    asynchronous: bool = False  # trained by `train_async` (threads), not by `make_train`
    # Trains on host environments ("gymnasium:<id>"): n-step updates that never restart an
    # environment mid-episode (a host learner cannot replay an episode from its start).
    host: bool = False
    # Config fields sizing a whole buffer that each of D devices keeps 1/D of, rounded up.
    per_device_rounded_up: tuple[str, ...] = ()
    # With `Config.recurrent`: whether the critic gets a recurrent core too. False where the
    # critic learns from replayed single transitions, which carry no hidden state.
    recurrent_critic: bool = True

    @property
    def build(self) -> StampedBuilder:
        """`build(config, spec, networks, optimizer) -> Algorithm`, its `fixed_batch` set from
        `episodic`."""
        if self.builder is None:
            raise ValueError(f"algo={self.name!r} has no synchronous builder (asynchronous)")
        return StampedBuilder(self.builder, self.episodic)


class StampedBuilder(NamedTuple):
    """An entry's builder (imported on the first call if declared by name), whose `Algorithm`
    gets `fixed_batch = not episodic`: the registry, not the builder, says which it is."""

    builder: Builder | str
    episodic: bool

    def __call__(self, *args: Any) -> Algorithm:
        builder = self.builder
        if isinstance(builder, str):
            module, _, function = builder.partition(":")
            builder = getattr(importlib.import_module(module), function)
        return builder(*args)._replace(fixed_batch=not self.episodic)


_AC = "a3c_jax.algorithms.actor_critic"

REGISTRY: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        # The first deck's naive online actor-critic: an update after every environment step,
        # with the one-step TD target r + γ V(s') and advantage r + γ V(s') - V(s).
        AlgorithmSpec(
            "online_ac", f"{_AC}:make_nstep", {"n_steps": 1, "gae_lambda": 0.0}, host=True
        ),
        # The first deck's episodic actor-critic with experience replay: actor on each episode's
        # one-step TD errors, critic on replayed minibatches.
        AlgorithmSpec(
            "ac_replay",
            "a3c_jax.algorithms.ac_replay:make_ac_replay",
            {"gae_lambda": 0.0},
            episodic=True,
            per_device_rounded_up=("replay_capacity", "replay_batch_size"),
            recurrent_critic=False,
        ),
        # The first deck's distributed actor-critic: whole episodes, Monte-Carlo returns
        # R <- r + γ R from R = 0 at termination, no entropy bonus.
        AlgorithmSpec(
            "da2c", f"{_AC}:make_episodic", {"gae_lambda": 1.0, "ent_coef": 0.0}, episodic=True
        ),
        # Synchronous advantage actor-critic (Mnih et al. 2016, synchronous variant): n-step
        # bootstrapped returns over many vectorised environments, entropy bonus, one update per
        # rollout.
        AlgorithmSpec("a2c", f"{_AC}:make_nstep", {}, host=True),
        # The first deck's N-step distributed actor-critic: workers (here vectorised
        # environments) play up to N steps, bootstrap from V(s_N) unless the episode ended, plain
        # discounted n-step returns (no GAE), no entropy bonus, Adam, and one synchronous update
        # averaged over workers.
        AlgorithmSpec(
            "nstep_da2c",
            f"{_AC}:make_nstep",
            {"n_steps": 10, "gae_lambda": 1.0, "ent_coef": 0.0, "optimizer": "adam"},
            host=True,
        ),
        # Asynchronous advantage actor-critic (Mnih et al. 2016): num_workers actor-learner
        # threads, each playing t_max = n_steps = 5 steps in its own environment (one, as in the
        # paper), plain n-step returns, entropy bonus 0.01, RMSprop whose statistics all workers
        # share, gradient norm clipped at 40 (as common A3C implementations do). Measured on
        # CartPole-v1 with 1, 2 and 4 workers (3 seeds each, 200k steps): all 9 runs reach a
        # greedy return of 500, their last 20 training episodes first average 475 after
        # 23k-43k steps.
        AlgorithmSpec(
            "a3c",
            None,
            {
                "num_workers": 4,
                "num_envs": 1,
                "n_steps": 5,
                "gae_lambda": 1.0,
                "optimizer": "rmsprop",
                "lr": 3e-3,
                "max_grad_norm": 40.0,
            },
            asynchronous=True,
            host=True,
        ),
    )
}


def get(name: str) -> AlgorithmSpec:
    """The entry of `name`; `KeyError` naming the known algorithms if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"algo={name!r} is not an algorithm here; choose one of {names()}") from None


def names(asynchronous: bool | None = None, host: bool | None = None) -> tuple[str, ...]:
    """The algorithms' names, sorted; only the (a)synchronous ones if `asynchronous` is given,
    only those that do (or do not) train on host environments if `host` is."""
    return tuple(
        sorted(
            n
            for n, s in REGISTRY.items()
            if asynchronous in (None, s.asynchronous) and host in (None, s.host)
        )
    )


def is_asynchronous(name: str) -> bool:
    """Whether `name` is trained by `train_async` (threads) rather than `make_train`."""
    return get(name).asynchronous


class BuilderTable(MutableMapping):
    """`{name: builder}` of the synchronous algorithms, read from (and written to) `REGISTRY`:
    `ALGORITHM_BUILDERS[name](config, spec, networks, optimizer)` builds the `Algorithm`; setting
    an item replaces that entry's builder (tests substitute a faulty one)."""

    def __getitem__(self, name: str) -> Builder:
        spec = REGISTRY[name]
        if spec.asynchronous:
            raise KeyError(name)
        return spec.build

    def __setitem__(self, name: str, builder: Builder) -> None:
        if isinstance(builder, StampedBuilder):  # an item read from here, put back
            builder = builder.builder
        REGISTRY[name] = REGISTRY[name]._replace(builder=builder)

    def __delitem__(self, name: str) -> None:
        raise TypeError("algorithms are removed from REGISTRY, not from ALGORITHM_BUILDERS")

    def __iter__(self) -> Iterator[str]:
        return iter(names(asynchronous=False))

    def __len__(self) -> int:
        return len(names(asynchronous=False))


ALGORITHM_BUILDERS = BuilderTable()


def __getattr__(name: str) -> Any:
    """`ALGORITHMS`: the names of the algorithms, read from `REGISTRY` when asked (so that an
    entry added at run time is listed)."""
    if name == "ALGORITHMS":
        return tuple(REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
