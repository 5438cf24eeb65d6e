"""Evaluation: metrics (PCK, EPE, OKS, COCO AP, jitter), scoring a split, and the report."""
