"""A recipe's operations sections: when it runs (``[schedule]``), where its results are shared
(``[storage]``) and what its tokens cost (``[cost]``). None of them can change a record, so none is part
of the build id."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from pipeline.config import Section


class ScheduleConfig(Section):
    """When `tinyforge serve` runs the recipe on its own (see docs/operations.md)."""

    cron: str = Field(..., description='e.g. "0 3 * * *" for 03:00 every night')
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Berlin")
    dated: bool = Field(True, description="each scheduled run builds <name>-<YYYY-MM-DD> with a seed of its own, "
                        "so nights add new records instead of rebuilding the same ones")
    wait_for_lock: float = Field(3600.0, ge=0.0, description="seconds a run waits for another run of the same "
                                 "build directory before it fails")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.schedules import validate_cron_string

        return validate_cron_string(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class StorageConfig(Section):
    """Where builds are shared beyond this machine: any fsspec URL (s3://, gs://, az://, file://, memory://)."""

    publish_to: str | None = Field(None, description="copy every published dataset to <publish_to>/<build name>/ "
                                   "(manifest last, so a reader never sees half a copy)")
    cache_url: str | None = Field(None, description="a response cache shared between machines: each run reads "
                                  "the completions there first and adds the ones it made")
    options: dict[str, Any] = Field(default_factory=dict, description="fsspec storage options (endpoint, "
                                    "profile...); keep credentials in the environment, not in the recipe")

    @field_validator("publish_to", "cache_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import fsspec

        protocol = v.split("://", 1)[0] if "://" in v else "file"
        if protocol not in fsspec.available_protocols():
            raise ValueError(f"{v!r}: unknown fsspec protocol {protocol!r}")
        return v.rstrip("/")


class CostConfig(Section):
    """Prices for the usage table of the report; the embedded model costs nothing but time."""

    prompt_per_million: float = Field(0.0, ge=0.0, description="price of a million prompt tokens")
    completion_per_million: float = Field(0.0, ge=0.0, description="price of a million completion tokens")
    currency: str = "USD"

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_million + completion_tokens * self.completion_per_million) / 1e6
