"""Weights: checkpoint folders, the manifest, which model a task uses, and downloads from the model hub."""
