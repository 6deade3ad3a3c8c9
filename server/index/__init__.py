"""The private index: static Simple API pages written at publish time, served in front of the upload endpoint.

* ``pages`` renders a page (PEP 503/691/629/658/700/592); ``site`` writes the static tree at
  publish time and rebuilds it; ``negotiate`` picks the page form an ``Accept`` header asks for.
* ``upload`` is the upload endpoint (pypiserver), with ``storage`` (atomic, verified, write-once
  files), ``credentials`` (the upload htpasswd, the read password) and ``sdist_check``.
* ``serve`` runs ``wheelyard index``: the upload endpoint, then nginx (``nginx`` writes its
  configuration) or the embedded server (``embedded``, one ``connection`` per client), which
  reports project-page requests through ``demand``.
* ``api`` and ``commands`` are the index's routes in the API and its CLI commands.
"""
