"""The hypothesis settings of the fuzz targets: a bounded ``ci`` run, or a ``long`` one.

``HYPOTHESIS_PROFILE=long`` selects the long run (docs/development.md, "Fuzzing");
anything else, or nothing, the ``ci`` run. ``HUSHCHAT_FUZZ_EXAMPLES=N`` overrides the
number of examples per target of either. The settings are applied per test
(``@FUZZ``) rather than loaded as hypothesis's global profile, so the other
property-based tests of the suite keep their own settings.

* ``ci``: a fixed number of examples per target, derandomized (the same inputs on
  every run, so a CI failure reproduces locally), no example database, no deadline
  (2 cores shared with other work make per-example timing meaningless).
* ``long``: tens of thousands of examples per target, random, with hypothesis's
  example database (``.hypothesis/``) so a failure found once replays first next time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
EXAMPLES_ENV = "HUSHCHAT_FUZZ_EXAMPLES"
CI_EXAMPLES = 200
LONG_EXAMPLES = 20_000

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _profile() -> settings:
    name = os.environ.get(PROFILE_ENV, "ci")
    override = os.environ.get(EXAMPLES_ENV)
    if name == "long":
        return settings(
            max_examples=int(override or LONG_EXAMPLES),
            deadline=None,
            suppress_health_check=_SUPPRESSED,
            print_blob=True,
        )
    return settings(
        max_examples=int(override or CI_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=_SUPPRESSED,
    )


#: The settings every fuzz target is decorated with.
FUZZ = _profile()
PROFILE_NAME = "long" if os.environ.get(PROFILE_ENV) == "long" else "ci"
