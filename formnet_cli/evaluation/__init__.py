"""``formnet eval`` and ``formnet compare``: the benchmark protocol, baselines and reports."""
