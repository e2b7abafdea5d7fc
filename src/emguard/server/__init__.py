"""``emguard serve``: the provider side of an OpenAI-compatible fine-tuning API (optional extra ``[server]``).

Modules: ``app`` (app factory), ``routers`` (files, jobs, models), ``errors`` (OpenAI error shape), ``deps``
(state, auth, rate limit), ``schemas`` (request/response shapes), ``accesslog`` (ASGI access log + JSON body
cap), ``db`` (SQLAlchemy models), ``storage`` (content-addressed files), ``uploads`` (streaming multipart parsing
with limits), ``queue`` (leases), ``worker`` (training + audit), ``policy`` (operator YAML), ``audit`` (EM audit),
``auth`` (API keys), ``ratelimit``.
"""
