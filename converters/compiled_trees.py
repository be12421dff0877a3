"""Compiled tree ensembles (lleaves, treelite + tl2cgen): registered by the entry point in pyproject.toml; its runtimes arrive with the branch that builds them."""
