"""Ensure: the whole closure of what a team installs, for every target, on wheelyard's index.

The core is a plain call (``server.ensure.run.Ensurer``); ``make_ensurer`` builds one the way
the API runs it::

    from server.ensure.api import make_ensurer
    from server.ensure.inputs import from_requirements_file

    ensurer = make_ensurer(settings, service)          # service: server.service.BuildService
    report = ensurer.ensure(from_requirements_file(Path("requirements.txt")),
                            ["cp31{2,3}-manylinux_x86_64"], wait=True, timeout=1800)
    report.ok, report.counts(), report.to_dict()

Modules: ``inputs`` (requirements files, pyproject.toml, pylock.toml, uv.lock, plain strings),
``targets`` (identifiers and patterns, marker environments), ``resolve`` (a target's closure),
``holdings`` (what the index holds; private names), ``run`` (plan, submit, follow), ``report``,
``api`` (``POST /api/ensure``) and ``command`` (``wheelyard ensure``). This package imports
nothing itself, so that the command line starts fast.
"""
