"""A real one-node cluster for the test suite and scripts/cluster."""
