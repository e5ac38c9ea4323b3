"""The worker world: trainers that live outside one jitted program. A `store.ParameterStore`
holds the parameters; A3C's actor-learner threads (`a3c`) or one host learner over Gymnasium
environments (`host`) update it; `trainers` picks which by `Config.trainer`. Later backends
(separate processes, other machines) join here."""
