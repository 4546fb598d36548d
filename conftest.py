"""The test suite's one registration point: every fixture module in `tests/support/`.

Production is the service's default (digest/settings.py); the suite says explicitly that it is a
test run, before anything (the Celery app, at import) reads the settings.
"""

import os

os.environ["DIGEST_ENV"] = "test"

pytest_plugins = [
    "tests.support.services",
    "tests.support.sendgrid_fixtures",
    "tests.support.planning_worker",
    "tests.support.subscriber_fixtures",
    "tests.support.webhook_fixtures",
    "tests.support.browser",
    "tests.support.console_fixtures",
    "tests.support.live_app",
    "tests.support.erasure_scenario",
]
