"""Streams: bounded rings of record batches, one writer, many readers."""
