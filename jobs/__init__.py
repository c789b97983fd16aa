"""Jobs, schedules and sensors."""

from jobs.daily import daily_job, summary_job
from jobs.schedules import ALL_SCHEDULES as _SCHEDULES
from jobs.schedules import ALL_SENSORS as _SCHEDULE_SENSORS
from jobs.sensors import ALERT_SENSORS

ALL_JOBS = [daily_job, summary_job]
ALL_SCHEDULES = [*_SCHEDULES]
ALL_SENSORS = [*ALERT_SENSORS, *_SCHEDULE_SENSORS]

__all__ = ["ALL_JOBS", "ALL_SCHEDULES", "ALL_SENSORS", "daily_job", "summary_job"]
