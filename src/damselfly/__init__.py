"""damselfly: peer-to-peer distribution of AI models and other large files."""

__version__ = "0.1.0"
