"""Schemathesis hooks for the registry's API description (docs/api.md).

- The description names two formats of its own, `phone` and `phonetrunc` (numbers the
  registry validates with libphonenumber, French numbering by default). A random string of
  the right length is almost never a phone number, so schemathesis is told what valid ones
  look like: French mobile numbers in E.164, whole or without their last two digits.
- Journeys are accepted within 24 hours of their start and never from the future, so the
  date-times generated are RFC 3339 instants of the last 20 hours: create, read, update
  and cancel can then follow each other (the stateful links).
"""

from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format("phone", st.from_regex(r"\A\+33[67][0-9]{8}\Z"))
schemathesis.openapi.format("phonetrunc", st.from_regex(r"\A\+33[67][0-9]{6}\Z"))


def recent_instant(_):
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return st.datetimes(
        min_value=now - timedelta(hours=20), max_value=now - timedelta(minutes=1)
    ).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")


schemathesis.openapi.format("date-time", st.deferred(lambda: recent_instant(None)))
