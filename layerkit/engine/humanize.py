"""Sizes and times the way Docker prints them."""

from __future__ import annotations

from datetime import UTC, datetime

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_size(n: float) -> str:
    """Docker's ``units.HumanSize``: decimal units, 3 significant digits (``39B``, ``4.86MB``, ``1.2GB``)."""
    size = float(n)
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    # The docker CLI prints sizes with units.HumanSizeWithPrecision(size, 3): "%.3g" plus the unit.
    text = f"{size:.3g}"
    return f"{text}{_UNITS[i]}"


def parse_size(text: str) -> int:
    """Parse ``20MB``, ``1.5GB``, ``512`` (decimal units, as dive's and Docker's flags take them)."""
    s = text.strip()
    num = s.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = s[len(num):].strip().lower().rstrip("b") or ""
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
    if unit.endswith("i"):
        mult = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
        if unit not in mult:
            raise ValueError(f"invalid size: {text!r}")
        return int(float(num) * mult[unit])
    if unit not in mult or not num:
        raise ValueError(f"invalid size: {text!r}")
    return int(float(num) * mult[unit])


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 time as found in image configs (nanoseconds allowed) into an aware UTC datetime."""
    if not text:
        return None
    s = text.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # Python accepts at most microseconds: cut extra fraction digits.
    if "." in s:
        head, rest = s.split(".", 1)
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        s = head + "." + (frac[:6] or "0") + rest[i:]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def rfc3339(dt: datetime | None) -> str | None:
    """Format an aware datetime as RFC 3339 in UTC (``2024-01-02T03:04:05Z``)."""
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``, as used by ``docker history`` and ``docker images``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(dt: datetime | None, now: datetime | None = None) -> str:
    """``13 days ago`` relative to now, as Docker's tables print CREATED."""
    if dt is None:
        return "N/A"
    now = now or datetime.now(UTC)
    return human_duration((now - dt).total_seconds()) + " ago"
