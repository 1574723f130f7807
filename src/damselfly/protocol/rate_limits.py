"""The rate limits in the manager's dynamic config, the one part of its wire models that every
member holds: a member without a manager applies "no limit" through the same object. Apart
from the others (``manager.py``), which such a member never loads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_RATE = 2**62


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RateLimitValues(Wire):
    download_bps: int | None = Field(None, ge=1, le=MAX_RATE, description="download bytes/s")
    upload_bps: int | None = Field(None, ge=1, le=MAX_RATE, description="upload bytes/s")
    back_to_source_bps: int | None = Field(None, ge=1, le=MAX_RATE, description="origin bytes/s")
    requests_per_second: float | None = Field(
        None, gt=0, le=1e9, allow_inf_nan=False, description="download requests/s"
    )
