"""Schemathesis hooks for the registry's API description (docs/api.md).

The description names two formats of its own, `phone` and `phonetrunc` (a number the
registry validates with libphonenumber, French numbering by default). A random string of
the right length is almost never a phone number, so schemathesis is told what valid ones
look like: French mobile numbers in E.164, whole or without their last two digits.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format("phone", st.from_regex(r"\A\+33[67][0-9]{8}\Z"))
schemathesis.openapi.format("phonetrunc", st.from_regex(r"\A\+33[67][0-9]{6}\Z"))
