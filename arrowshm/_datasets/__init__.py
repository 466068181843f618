"""Datasets: named, versioned, immutable tables (put, get/wait, build, lifecycle)."""
