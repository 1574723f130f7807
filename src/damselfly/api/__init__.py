"""The Python API: drop-ins for huggingface_hub's download functions (``api/hf.py``) and the
modelscope SDK's (``damselfly.modelscope``), served by damselfly's pipeline."""

from damselfly.api.hf import hf_hub_download, snapshot_download

__all__ = ["hf_hub_download", "snapshot_download"]
