"""Notifications: DingTalk robot messages (signed webhook) and e-mail (SMTP).

Secrets (the webhook URL with its access token, the signing secret, the SMTP password) come from the
configuration's ``SecretStr`` fields, which are filled only from the environment; they never appear
in a log line, an exception message or a return value.
"""

from rotation_platform.notify.dingtalk import DingTalkError, dingtalk_sign, send_dingtalk, signed_url
from rotation_platform.notify.email import EmailError, send_email
from rotation_platform.notify.degraded import DegradedService
from rotation_platform.notify.message import Notification, notify_all
from rotation_platform.notify.runs import CLI_ALERT_TAG, CLI_RUN_TAG, cli_run_notification, notify_cli_run

__all__ = [
    "CLI_ALERT_TAG",
    "CLI_RUN_TAG",
    "DegradedService",
    "DingTalkError",
    "EmailError",
    "Notification",
    "cli_run_notification",
    "dingtalk_sign",
    "notify_all",
    "notify_cli_run",
    "send_dingtalk",
    "send_email",
    "signed_url",
]
