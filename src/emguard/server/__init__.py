"""``emguard serve``: the provider side of an OpenAI-compatible fine-tuning API (optional extra ``[server]``).

Modules: ``app`` (FastAPI routes), ``db`` (SQLAlchemy models), ``storage`` (content-addressed files),
``uploads`` (streaming multipart parsing with limits), ``queue`` (leases), ``worker`` (training + audit),
``policy`` (operator YAML), ``audit`` (EM audit), ``auth`` (API keys), ``ratelimit``.
"""
