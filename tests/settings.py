"""Settings for the test suite: the project's settings on their own Redis database and data folder."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SLUICE_DATA_DIR", "/tmp/sluice-test-data")
# One test database per pytest process, so that runs side by side (developers, helpers) never share one.
os.environ.setdefault("DATABASE_TEST_NAME", f"test_sluice_{os.getpid()}")

from portal.settings import *  # noqa: E402,F403

# Hashing with a slow hasher only costs test time; the real one is used everywhere else.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
