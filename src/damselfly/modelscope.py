"""Drop-ins for the modelscope SDK's download functions: ``from damselfly.modelscope import
snapshot_download, model_file_download`` (see ``damselfly.api.modelscope``)."""

from damselfly.api.modelscope import model_file_download, snapshot_download

__all__ = ["model_file_download", "snapshot_download"]
