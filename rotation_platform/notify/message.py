"""A channel-neutral notification and the fan-out to every enabled channel."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rotation_platform.config.models import NotificationConfig

__all__ = ["Notification", "notify_all"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    """What happened, for people: a title, a markdown body and its severity."""

    title: str
    body: str
    level: str = "info"  # info | warning | error
    fields: dict[str, str] = field(default_factory=dict)

    def markdown(self, keyword: str = "") -> str:
        icon = {"error": "❌", "warning": "⚠️"}.get(self.level, "✅")
        lines = [f"### {icon} {self.title}", "", self.body]
        if self.fields:
            lines.append("")
            lines += [f"- **{k}**: {v}" for k, v in self.fields.items()]
        if keyword and keyword not in "\n".join(lines):
            lines += ["", f"<{keyword}>"]  # DingTalk robots with a keyword policy need it in the text
        return "\n".join(lines)

    def plain(self) -> str:
        lines = [self.title, "", self.body]
        if self.fields:
            lines.append("")
            lines += [f"{k}: {v}" for k, v in self.fields.items()]
        return "\n".join(lines)


def notify_all(config: NotificationConfig, notification: Notification, *, timeout: float = 10.0) -> dict[str, str]:
    """Send to every enabled channel; returns ``channel -> "sent" | "error: ..."`` (never raises).

    A failing channel does not stop the others; errors are logged without secrets.
    """
    from rotation_platform.notify.dingtalk import send_dingtalk
    from rotation_platform.notify.email import send_email

    outcome: dict[str, str] = {}
    if config.dingtalk.enabled:
        try:
            send_dingtalk(config.dingtalk, notification, timeout=timeout)
            outcome["dingtalk"] = "sent"
        except Exception as exc:  # noqa: BLE001 - one channel's failure must not hide another's
            outcome["dingtalk"] = f"error: {exc}"
            log.warning("DingTalk notification failed: %s", exc)
    if config.email.enabled:
        try:
            send_email(config.email, notification, timeout=timeout)
            outcome["email"] = "sent"
        except Exception as exc:  # noqa: BLE001
            outcome["email"] = f"error: {exc}"
            log.warning("e-mail notification failed: %s", exc)
    return outcome
