"""mlflow plugin: registered by the entry point in pyproject.toml; its converters arrive with the branch that builds them."""
