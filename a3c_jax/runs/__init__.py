"""Run folders: the folder and its lock (`run_folder`, `run_claim`), one checkpoint file
(`checkpoint_file`) and a run's set of them (`checkpoints`), metrics, progress, signals, and the
drivers that train into a folder: the jitted trainer in chunks (`chunked`) and the worker
trainers (`worker_runs`); `saving` saves and loads from Python."""
