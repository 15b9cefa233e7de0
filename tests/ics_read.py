#!/usr/bin/env python3
"""Reads an iCalendar file with the `icalendar` package from PyPI (a parser independent of
battleplan) and prints what it found as JSON for tests/tests/calendar.rs: the calendar's
properties, then each event and to-do with its instants in UTC, and each alarm with the instant
it rings at (a trigger relative to the due instant resolved here).

Usage: ics_read.py FILE. Exits 1 with the reason on anything icalendar could not read, or an
instant that is not a UTC date-time.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

import icalendar


def fail(message):
    print(f"ics_read: {message}", file=sys.stderr)
    sys.exit(1)


def utc(component, name):
    """A DATE-TIME property in UTC, as 2026-11-01T14:00:00Z; None when absent."""
    value = component.get(name)
    if value is None:
        return None
    instant = value.dt
    if not isinstance(instant, datetime):
        fail(f"{name} of {component.get('UID')} is {instant!r}, not a date-time")
    if instant.tzinfo is None or instant.utcoffset() != timedelta(0):
        fail(f"{name} of {component.get('UID')} is {instant!r}, not in UTC")
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def text(component, name):
    value = component.get(name)
    return None if value is None else str(value)


def categories(component):
    value = component.get("CATEGORIES")
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(category) for each in values for category in each.cats]


def checked(component):
    # icalendar is lenient: what it could not parse it notes in `errors` instead of raising.
    if component.errors:
        fail(f"{component.name} {component.get('UID')}: {component.errors}")
    return component


def alarm(component, due):
    trigger = component.get("TRIGGER")
    if trigger is None:
        fail(f"an alarm of {component.get('UID')} has no TRIGGER")
    related = trigger.params.get("RELATED", "START")
    value = trigger.dt
    if isinstance(value, timedelta):
        if related != "END":
            fail(f"a relative trigger of a to-do must be RELATED=END (its DUE), not {related}")
        base = datetime.strptime(due, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        at = (base + value).strftime("%Y-%m-%dT%H:%M:%SZ")
        seconds = int(value.total_seconds())
    else:
        if value.utcoffset() != timedelta(0):
            fail(f"an absolute trigger {value!r} is not in UTC")
        at = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        seconds = None
    return {
        "action": text(component, "ACTION"),
        "description": text(component, "DESCRIPTION"),
        "related": related,
        "seconds": seconds,
        "at": at,
    }


def main():
    if len(sys.argv) != 2:
        fail("usage: ics_read.py FILE")
    with open(sys.argv[1], "rb") as file:
        data = file.read()
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as error:
        fail(f"not an iCalendar file: {error}")
    checked(calendar)
    found = {
        "icalendar": icalendar.__version__,
        "calendar": {
            "prodid": text(calendar, "PRODID"),
            "version": text(calendar, "VERSION"),
            "calscale": text(calendar, "CALSCALE"),
            "method": text(calendar, "METHOD"),
            "name": text(calendar, "X-WR-CALNAME"),
            "time_zone": text(calendar, "X-WR-TIMEZONE"),
        },
        "events": [],
        "todos": [],
        "others": [],
    }
    for component in calendar.subcomponents:
        checked(component)
        common = {
            "uid": text(component, "UID"),
            "sequence": int(component.get("SEQUENCE", -1)),
            "stamp": utc(component, "DTSTAMP"),
            "summary": text(component, "SUMMARY"),
            "description": text(component, "DESCRIPTION"),
            "categories": categories(component),
        }
        if component.name == "VEVENT":
            common["start"] = utc(component, "DTSTART")
            common["end"] = utc(component, "DTEND")
            found["events"].append(common)
        elif component.name == "VTODO":
            due = utc(component, "DUE")
            common["due"] = due
            common["status"] = text(component, "STATUS")
            common["completed"] = utc(component, "COMPLETED")
            common["alarms"] = [
                alarm(checked(child), due)
                for child in component.subcomponents
                if child.name == "VALARM"
            ]
            found["todos"].append(common)
        else:
            found["others"].append(component.name)
    json.dump(found, sys.stdout, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
