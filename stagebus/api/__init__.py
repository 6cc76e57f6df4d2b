"""The HTTP service, ``stagebus api``: ``/api/v1`` pipelines and batches over the event log.

Modules: :mod:`.app` (``create_app``), :mod:`.routes`, :mod:`.auth` (``require_owner``),
:mod:`.ratelimit`, :mod:`.schemas`, :mod:`.errors`, :mod:`.service` (what routes do),
:mod:`.batches` (a batch as a stagebus run), :mod:`.processors` (``@processor``),
:mod:`.keys` (key format and hashing), :mod:`.body` (body limits and batch formats),
:mod:`.runner` (the embedded stage runner thread), :mod:`.server` (uvicorn).
"""
