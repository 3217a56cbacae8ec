"""The training engine: build an adapter, train, evaluate, checkpoint, export, predict."""
