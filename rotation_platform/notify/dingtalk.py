"""DingTalk custom robot: markdown messages to a signed webhook.

Signing (DingTalk "加签" security setting): ``sign = urlencode(base64(HMAC-SHA256(key=secret,
msg=f"{timestamp_ms}\\n{secret}")))``, appended to the webhook URL as ``&timestamp=...&sign=...``.
The robot answers ``{"errcode": 0, "errmsg": "ok"}`` on success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from rotation_platform.config.models import DingTalkConfig
from rotation_platform.errors import RotationError
from rotation_platform.notify.message import Notification

__all__ = ["DingTalkError", "dingtalk_sign", "signed_url", "send_dingtalk"]


class DingTalkError(RotationError):
    """The robot refused or could not be reached. The message never contains the token or secret."""


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The base64 HMAC-SHA256 signature (not yet URL-encoded)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(webhook: str, secret: str | None, timestamp_ms: int | None = None) -> str:
    if not secret:
        return webhook
    ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    sep = "&" if urllib.parse.urlsplit(webhook).query else "?"
    return f"{webhook}{sep}timestamp={ts}&sign={urllib.parse.quote_plus(dingtalk_sign(secret, ts))}"


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: the access token lives there


def send_dingtalk(config: DingTalkConfig, notification: Notification, *, timeout: float = 10.0) -> None:
    if config.webhook is None:
        raise DingTalkError("DingTalk is enabled but ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK is not set")
    webhook = config.webhook.get_secret_value()
    secret = config.secret.get_secret_value() if config.secret is not None else None
    url = signed_url(webhook, secret)
    body = json.dumps({
        "msgtype": "markdown",
        "markdown": {"title": notification.title, "text": notification.markdown(config.keyword)},
    }, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    where = _host(webhook)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            answer = json.loads(response.read().decode() or "{}")
    except urllib.error.HTTPError as exc:
        raise DingTalkError(f"DingTalk robot at {where} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DingTalkError(f"DingTalk robot at {where} unreachable: {reason}") from None
    except json.JSONDecodeError:
        raise DingTalkError(f"DingTalk robot at {where} answered with something other than JSON") from None
    if answer.get("errcode", 0) != 0:
        raise DingTalkError(f"DingTalk robot at {where} refused the message: "
                            f"errcode {answer.get('errcode')} {answer.get('errmsg', '')}")
