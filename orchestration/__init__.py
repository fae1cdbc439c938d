"""kong-plugin-matrix: measure Kong external-plugin instance churn across Kong versions."""

__version__ = "0.1.0"
