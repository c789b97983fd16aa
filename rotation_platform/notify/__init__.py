"""Notifications: DingTalk robot messages (signed webhook) and e-mail (SMTP).

Secrets (the webhook URL with its access token, the signing secret, the SMTP password) come from the
configuration's ``SecretStr`` fields, which are filled only from the environment; they never appear
in a log line, an exception message or a return value.
"""

from rotation_platform.notify.dingtalk import DingTalkError, dingtalk_sign, send_dingtalk, signed_url
from rotation_platform.notify.email import EmailError, send_email
from rotation_platform.notify.message import Notification, notify_all

__all__ = [
    "DingTalkError",
    "EmailError",
    "Notification",
    "dingtalk_sign",
    "notify_all",
    "send_dingtalk",
    "send_email",
    "signed_url",
]
