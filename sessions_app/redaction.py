"""A log filter that keeps API keys and tokens out of every log line."""

from __future__ import annotations

import logging
import re

# OpenAI keys (sk-…), Switchboard personal tokens (sb_…), and bearer headers. A token's public prefix
# (its first 10 characters, sb_ + 7, shown on the tokens page) stays readable so the security log can
# name it; anything longer is a token, or most of one, and is redacted.
SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|sb_[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9_\-\.]{6,})")


def redact(text: str) -> str:
    return SECRET_PATTERN.sub("[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
