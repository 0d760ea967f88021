"""cope: cost-efficient collaboration between small and large language models (COPE)."""

__version__ = "0.1.0"
