"""Hyperparameter sweeps: a grid as one compiled program (`grid`), Optuna studies over it
(`tune`), and their output folders (`output`)."""
