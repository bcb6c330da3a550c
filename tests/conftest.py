"""Shared pytest configuration: a deterministic Hypothesis profile for every property test.

Hypothesis draws its examples from a fixed seed (derandomize) and keeps no example
database, so a property test explores the same cases on every machine and every run;
deadlines are off because they measure wall-clock time, which a slow CI runner varies.
Pick another profile with HYPOTHESIS_PROFILE=explore for a randomised, longer search.
"""
import os

from hypothesis import settings

settings.register_profile("labkit", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", max_examples=1000, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "labkit"))
