"""The Faust runtime of a worker: the app and its tables, the batch transport, the runners
that drive the stages, the persistent store, liveness, metrics and logs."""
