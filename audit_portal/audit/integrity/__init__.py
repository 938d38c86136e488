"""Tamper evidence and retention: sealing the hash chain, checkpoints, verification and the purge."""
