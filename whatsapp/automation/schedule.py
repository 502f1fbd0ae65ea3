"""Business hours: a weekly schedule of opening intervals in a time zone, and holidays (closed all day).

A schedule is a list of {"day": "mon".."sun", "start": "HH:MM", "end": "HH:MM"} (end may be "24:00"); intervals
of one day must not overlap and end after they start. No interval at all means open around the clock. Whether the
business is open is read in its time zone's wall-clock time, so a 09:00 opening stays 09:00 across a DST change.
"""
import datetime
import re
import zoneinfo
from functools import lru_cache

from core.errors import DomainError

from .errors import AutomationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
MAX_INTERVALS = 50
MAX_HOLIDAYS = 366


def _minutes(value):
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


@lru_cache(maxsize=1)
def time_zones():
    return frozenset(zoneinfo.available_timezones())


def check_time_zone(name):
    if name and name not in time_zones():
        raise DomainError(AutomationError.INVALID_TIME_ZONE, f"Unknown time zone '{name}'; use an IANA name such as "
                                                            "Europe/Berlin.", {"time_zone": name})
    return name


def clean_schedule(intervals):
    """The schedule sorted by day and start, or 400 invalid_schedule saying which interval is wrong."""
    if not isinstance(intervals, list) or len(intervals) > MAX_INTERVALS:
        raise DomainError(AutomationError.INVALID_SCHEDULE,
                          f"The schedule is a list of at most {MAX_INTERVALS} intervals.")
    cleaned = []
    for index, interval in enumerate(intervals):
        if not isinstance(interval, dict) or set(interval) != {"day", "start", "end"}:
            raise DomainError(AutomationError.INVALID_SCHEDULE,
                              f"Interval {index}: give exactly day, start and end.", {"index": index})
        day, start, end = interval["day"], interval["start"], interval["end"]
        if day not in DAYS:
            raise DomainError(AutomationError.INVALID_SCHEDULE, f"Interval {index}: day is one of {', '.join(DAYS)}.",
                              {"index": index})
        if not all(isinstance(v, str) and TIME_RE.match(v) for v in (start, end)) or start == "24:00":
            raise DomainError(AutomationError.INVALID_SCHEDULE,
                              f"Interval {index}: times are HH:MM (00:00 to 24:00).", {"index": index})
        if _minutes(end) <= _minutes(start):
            raise DomainError(AutomationError.INVALID_SCHEDULE,
                              f"Interval {index}: it ends ({end}) before it starts ({start}).", {"index": index})
        cleaned.append({"day": day, "start": start, "end": end})
    cleaned.sort(key=lambda i: (DAYS.index(i["day"]), i["start"]))
    for before, after in zip(cleaned, cleaned[1:]):
        if before["day"] == after["day"] and _minutes(after["start"]) < _minutes(before["end"]):
            raise DomainError(AutomationError.INVALID_SCHEDULE,
                              f"{before['day']} {before['start']}–{before['end']} overlaps "
                              f"{after['start']}–{after['end']}.", {"day": before["day"]})
    return cleaned


def clean_holidays(days):
    if not isinstance(days, list) or len(days) > MAX_HOLIDAYS:
        raise DomainError(AutomationError.INVALID_HOLIDAYS, f"Holidays are a list of at most {MAX_HOLIDAYS} dates.")
    cleaned = set()
    for value in days:
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError(value)
            cleaned.add(datetime.date.fromisoformat(value).isoformat())
        except ValueError:
            raise DomainError(AutomationError.INVALID_HOLIDAYS, f"'{str(value)[:20]}' is not a date (YYYY-MM-DD).",
                              {"value": str(value)[:20]}) from None
    return sorted(cleaned)


def is_open(schedule, holidays, time_zone, now):
    """Whether `now` (aware) falls inside the schedule, read in `time_zone`'s wall-clock time."""
    local = now.astimezone(zoneinfo.ZoneInfo(time_zone or "UTC"))
    if local.date().isoformat() in (holidays or ()):
        return False
    if not schedule:
        return True
    day, minute = DAYS[local.weekday()], local.hour * 60 + local.minute
    return any(i["day"] == day and _minutes(i["start"]) <= minute < _minutes(i["end"]) for i in schedule)
