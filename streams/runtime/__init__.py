"""The Faust runtime of a worker: the agents and their checkpoints, the app and its tables, the
batch transport, the runners that drive the stages, the persistent store, the fence around
Faust's private members, liveness, metrics and logs."""
