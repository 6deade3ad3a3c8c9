"""Demand from clients: what pip and uv ask the index for, and the misses among it.

The index reports every request for a project page (``GET /api/index-requests``) with the
client's own ``User-Agent``; ``useragent`` turns that into the client's build identifier,
``holdings`` says whether the index's files serve it, ``misses`` keeps the misses in Redis
(bounded), ``on_miss`` builds on a miss where a deployment asks for it, ``routes`` is the API.
"""
