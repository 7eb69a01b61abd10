"""opbreak: where LLM inference time goes, operator by operator, prefill and decode."""

__version__ = "0.1.0"
