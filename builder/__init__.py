"""The worker side of wheelyard: targets, the build pipeline steps, the Celery tasks.

Everything here is plain functions and small objects; only ``builder.tasks`` knows Celery.
"""
