"""E-mail over SMTP (optionally STARTTLS and login), settings from the configuration/environment."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from rotation_platform.config.models import EmailConfig
from rotation_platform.errors import RotationError
from rotation_platform.notify.message import Notification

__all__ = ["EmailError", "send_email", "build_email"]


class EmailError(RotationError):
    """The SMTP server refused or could not be reached (never includes the password)."""


def build_email(config: EmailConfig, notification: Notification) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[rotation] {notification.title}"
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.recipients)
    msg["X-Rotation-Level"] = notification.level
    msg.set_content(notification.plain())
    return msg


def send_email(config: EmailConfig, notification: Notification, *, timeout: float = 10.0) -> None:
    if not config.recipients:
        raise EmailError("e-mail is enabled but has no recipients (notifications.email.recipients)")
    where = f"{config.smtp_host}:{config.smtp_port}"
    msg = build_email(config, notification)
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())  # verifies the server's certificate
            if config.username:
                if config.password is None:
                    raise EmailError(f"SMTP login as {config.username} needs "
                                     "ROTATION_NOTIFICATIONS__EMAIL__PASSWORD")
                smtp.login(config.username, config.password.get_secret_value())
            refused = smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise EmailError(f"SMTP server {where} refused the login of {config.username}: {exc.smtp_code}") from None
    except smtplib.SMTPException as exc:
        raise EmailError(f"SMTP server {where} refused the message: {type(exc).__name__}") from None
    except OSError as exc:
        raise EmailError(f"SMTP server {where} unreachable: {exc.strerror or exc}") from None
    if refused:
        raise EmailError(f"SMTP server {where} refused recipients {sorted(refused)}")
