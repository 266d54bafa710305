"""Settings for the test suite: the project's settings on their own Redis database and data folder."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# One test database and data folder per pytest process, so that runs side by side never share one. Child
# processes (workers, servers) inherit these from the environment.
os.environ.setdefault("SLUICE_DATA_DIR", f"/tmp/sluice-test-data-{os.getpid()}")
os.environ.setdefault("DATABASE_TEST_NAME", f"test_sluice_{os.getpid()}")
# Tests run servers and workers in threads of the test process: a roomier pool than production default.
os.environ.setdefault("SLUICE_DB_POOL_MAX", "20")
# The collector's compiled helper is always on in tests: the tests that compare it with the numpy path call the
# numpy path themselves, so nothing is gained by turning it off and those tests would check nothing.
os.environ["SLUICE_NATIVE"] = "1"

from portal.settings import *  # noqa: F403

# Hashing with a slow hasher only costs test time; the real one is used everywhere else.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
