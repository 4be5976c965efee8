"""Spending and rate limits: :class:`RateLimiter` (RPM + TPM), :class:`Budget`, and the stores
that share their state between threads, processes and hosts (memory, SQLite, Redis, Redis
Cluster).

May use: ``base``, ``catalogue`` (a model's published rate limits) and ``billing`` (costs).
Never the meter or any face.
"""
