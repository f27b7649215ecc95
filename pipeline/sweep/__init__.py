"""Erasure on schedule: retention sweeps of the site's own stores (`erasure sweep`)."""
