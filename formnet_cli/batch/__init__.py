"""Many files in one call: planning (:mod:`~formnet_cli.batch.plan`), running
(:mod:`~formnet_cli.batch.run`) and summarising (:mod:`~formnet_cli.batch.summary`) a batch.
Importing this package (and :mod:`formnet_cli.batch.summary`) does not import torch."""
