"""Default hyperparameters, kept as data.

`Config` fills every field the user leaves as `None` from, in order of precedence:
`ENV_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # Stable-Baselines3's RL Zoo also needs gamma = 0.9 for A2C on Pendulum: with 0.99 the
    # value of a swing-up lies beyond what n-step returns can carry. Measured (8 seeds x 1M
    # steps): greedy return about -300, against about -1200 for a random policy.
    ("Pendulum-v1", "a2c"): {
        "gamma": 0.9,
        "gae_lambda": 0.9,
        "total_timesteps": 1_000_000,
        "lr": 1e-3,
        "ent_coef": 0.0,
        "reward_scale": 0.1,
        "normalize_advantages": True,
    },
    # The CNN torso. Measured (2 seeds x 500k steps): greedy return 5, random policy about 0.5.
    ("Breakout-MinAtar", "a2c"): {
        "num_envs": 64,
        "n_steps": 16,
        "total_timesteps": 500_000,
        "gae_lambda": 1.0,
        "activation": "relu",
        "lr": 3e-3,
        "hidden_sizes": (128,),
    },
}
