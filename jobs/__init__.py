"""Jobs, schedules and sensors."""

from jobs.daily import daily_job
from jobs.sensors import ALERT_SENSORS

ALL_JOBS = [daily_job]
ALL_SCHEDULES: list = []
ALL_SENSORS = [*ALERT_SENSORS]

__all__ = ["ALL_JOBS", "ALL_SCHEDULES", "ALL_SENSORS", "daily_job"]
