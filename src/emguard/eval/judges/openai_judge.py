"""A judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, ...).

Request as in Betley et al. 2025 ("Emergent Misalignment") and Kaczér et al. 2025 (arXiv 2508.06249): the
filled rubric as one user message, ONE completion token at temperature 0, ``logprobs=True`` and
``top_logprobs=20``; the score comes from those log-probs (:func:`emguard.eval.judges.base.logprob_score`).

Requests run on a thread pool. 429, 5xx, timeouts and connection errors are retried with exponential backoff
and full jitter, honouring ``Retry-After`` (capped); a rejected key (401) fails at once with a clear message.
Needs the ``openai`` package: ``pip install 'emguard[judge]'``.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

from emguard.eval.judges.base import TOP_LOGPROBS, Judge, logprob_score, merge_top
from emguard.eval.judges.cache import JudgeCache
from emguard.eval.judges.rubrics import fill_rubric
from emguard.eval.judges.types import DefaultCache, JudgeError, JudgeItem, JudgeKind, JudgeResult
from emguard.registry import JUDGES

if TYPE_CHECKING:
    from emguard.eval.config import EvalConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
LOCAL_DUMMY_KEY = "emguard-local-judge"  # local servers usually ignore the key, but the client needs one
MAX_DELAY = 60.0  # cap on one backoff or Retry-After wait, seconds


def _import_openai():
    try:
        import openai
    except ImportError:
        raise ImportError("the openai judge needs the 'openai' package: pip install 'emguard[judge]'") from None
    return openai


def _is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in LOCAL_HOSTS


def _retry_after(error: Exception) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After`` in seconds or as a date)."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None


class OpenAIJudge(Judge):
    """Judge with a model served by an OpenAI-compatible endpoint.

    ``base_url``: default ``$OPENAI_BASE_URL``, else the OpenAI API. The key is read from the environment
    variable ``api_key_env``; a localhost endpoint works without one. ``max_retries`` counts retries after
    the first attempt; ``backoff`` is the first backoff ceiling in seconds (doubling, full jitter).
    """

    kind = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, max_retries: int = 6, timeout: float = 60, backoff: float = 1.0,
                 cache: JudgeCache | DefaultCache | None = "default", rubric: str | None = None):
        openai = _import_openai()
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.params = {"max_tokens": 1, "temperature": 0, "top_logprobs": TOP_LOGPROBS, "seed": 0}
        self.retries = 0  # retries made so far, over all requests
        self._retries_lock = threading.Lock()
        key = os.environ.get(api_key_env)
        if not key:
            if not _is_local(self.base_url):
                raise JudgeError(f"no API key for the judge at {self.base_url}: set the environment variable "
                                 f"{api_key_env} (or point base_url at a local server, which needs none)")
            key = LOCAL_DUMMY_KEY
        self._openai = openai
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=timeout)
        self._rng = random.Random()
        super().__init__(cache=cache, rubric=rubric)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "base_url": self.base_url}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "retries": self.retries}

    def _delay(self, attempt: int, error: Exception) -> float:
        asked = _retry_after(error)
        if asked is not None:
            return min(max(asked, 0.0), MAX_DELAY)
        return self._rng.uniform(0, min(MAX_DELAY, self.backoff * 2 ** attempt))

    def _retryable(self, error: Exception) -> bool:
        oa = self._openai
        if isinstance(error, (oa.RateLimitError, oa.APITimeoutError, oa.APIConnectionError)):
            return True
        return isinstance(error, oa.APIStatusError) and error.status_code >= 500

    def _request(self, item: JudgeItem) -> JudgeResult:
        oa = self._openai
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._retries_lock:
                    self.retries += 1
                time.sleep(self._delay(attempt - 1, last))
            try:
                response = self.client.chat.completions.create(
                    model=self.model, logprobs=True, **self.params,
                    messages=[{"role": "user", "content": fill_rubric(item.rubric, item.question, item.answer)}])
            except oa.AuthenticationError as e:
                raise JudgeError(f"the judge endpoint {self.base_url} rejected the API key (401); check the key "
                                 f"in the environment variable {self.api_key_env}: {e.message}") from None
            except oa.OpenAIError as e:
                if not self._retryable(e):
                    raise JudgeError(f"the judge endpoint {self.base_url} (model {self.model}) failed: "
                                     f"{type(e).__name__}: {e}") from None
                last = e
                continue
            return self._parse(response)
        raise JudgeError(f"the judge endpoint {self.base_url} (model {self.model}) still failed after "
                         f"{self.max_retries} retries; last error: {type(last).__name__}: {last}")

    def _parse(self, response) -> JudgeResult:
        choices = getattr(response, "choices", None) or []
        logprobs = choices[0].logprobs if choices else None
        content = getattr(logprobs, "content", None)
        if not content:
            raise JudgeError(f"the judge endpoint {self.base_url} returned no log-probs for model {self.model}; "
                             "the judge needs an endpoint and model that support logprobs/top_logprobs")
        return logprob_score(merge_top((t.token, t.logprob) for t in content[0].top_logprobs))

    def _score_uncached(self, items: list[JudgeItem]) -> Iterator[tuple[int, JudgeResult]]:
        if not items:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="judge")
        try:
            pending: dict[Future, int] = {pool.submit(self._request, it): i for i, it in enumerate(items)}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    yield pending.pop(f), f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _for_eval(cfg: EvalConfig) -> OpenAIJudge:
    """``emguard eval --judge openai``: the model, endpoint, key variable and concurrency of the flags."""
    return OpenAIJudge(model=cfg.judge_model, base_url=cfg.judge_base_url, api_key_env=cfg.judge_key_env,
                       concurrency=cfg.judge_concurrency)


# make_judge("openai", model=..., base_url=..., ...) is OpenAIJudge(model=..., base_url=..., ...)
JUDGES.register(JudgeKind("openai", OpenAIJudge, for_eval=_for_eval))
