"""Weights: checkpoint folders, which model a task uses, and downloads from the model hub."""
