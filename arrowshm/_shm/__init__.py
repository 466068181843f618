"""The shared-memory substrate: segments, their header, the registry, pins, pools, gc.

Nothing in this package knows Arrow. Datasets and streams are built on it;
the service may use :mod:`arrowshm._shm.registry` directly and nothing else.
"""
