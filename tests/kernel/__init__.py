"""Tests of the kernel foundation: codec, stores, replay, run keys, sensors, definitions."""
