"""Dataset I/O, validation and the grain input pipeline."""
