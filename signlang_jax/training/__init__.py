"""Training: the loop and its step, optimizer, checkpoints, config checks and history,
validation, processes, the compilation cache and the metric log."""
