"""Jobs, schedules and sensors.

Imported lazily: ``python -m jobs.main --config FILE`` imports this package before it has read its
arguments, and nothing here may load a configuration before then.
"""

from __future__ import annotations

__all__ = ["ALL_JOBS", "ALL_SCHEDULES", "ALL_SENSORS", "daily_job", "summary_job"]


def __getattr__(name: str):  # PEP 562
    if name in ("daily_job", "summary_job", "ALL_JOBS"):
        from jobs.daily import daily_job, summary_job

        return {"daily_job": daily_job, "summary_job": summary_job, "ALL_JOBS": [daily_job, summary_job]}[name]
    if name == "ALL_SCHEDULES":
        from jobs.schedules import ALL_SCHEDULES

        return list(ALL_SCHEDULES)
    if name == "ALL_SENSORS":
        from jobs.schedules import ALL_SENSORS
        from jobs.sensors import ALERT_SENSORS

        return [*ALERT_SENSORS, *ALL_SENSORS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
