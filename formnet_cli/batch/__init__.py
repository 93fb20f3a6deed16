"""Many files in one call: planning, running and summarising a batch. Importing this package
(and :mod:`formnet_cli.batch.summary`) does not import torch."""
