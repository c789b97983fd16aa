"""Jobs, schedules and sensors."""

from jobs.daily import daily_job
from jobs.schedules import ALL_SCHEDULES as _SCHEDULES
from jobs.sensors import ALERT_SENSORS

ALL_JOBS = [daily_job]
ALL_SCHEDULES = [*_SCHEDULES]
ALL_SENSORS = [*ALERT_SENSORS]

__all__ = ["ALL_JOBS", "ALL_SCHEDULES", "ALL_SENSORS", "daily_job"]
