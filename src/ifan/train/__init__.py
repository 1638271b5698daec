"""Training: losses, the training loop, checkpoints."""
