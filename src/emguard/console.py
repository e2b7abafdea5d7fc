"""What the console shows. By default: emguard's own job lines, progress bars and reports. With ``emguard -v``
also the libraries' chatter: transformers' weight-loading and shard-writing bars and log records, the Hub's
download bars, and the deprecation warnings that transformers raises about calls emguard makes.

The choice travels in the environment (``EMGUARD_VERBOSE=0/1``) so that spawned workers (the study's process
pool) inherit it: the CLI and each worker entry call :func:`setup`, which reads it. Importing emguard as a
library changes nothing; only :func:`setup` does. Light: no transformers or torch import.
"""

from __future__ import annotations

import os
import sys
import warnings

ENV = "EMGUARD_VERBOSE"

# (category, module regex, message regex) of library warnings that name no action for an emguard user; narrow on
# purpose: every other warning still shows
NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    # transformers 5 renamed gradient checkpointing to activation checkpointing (removal announced for v6); peft
    # (PeftModel reads is_gradient_checkpointing) and emguard's gradient_checkpointing_enable call use the old names
    (FutureWarning, r"transformers(\.|$)", r"`\w*gradient_checkpointing\w*` is deprecated"),
)

# environment read by the libraries at import; set only where the user has not chosen
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def is_verbose() -> bool:
    return os.environ.get(ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def setup(verbose: bool | None = None) -> bool:
    """Quiet the libraries unless verbose; ``verbose=None`` reads ``EMGUARD_VERBOSE``, a bool sets it (for the
    processes started from here). Call before transformers is imported where possible (its progress-bar and
    verbosity defaults are read at import); a later call also sets them on the imported modules. Returns the
    verbosity in force."""
    if verbose is not None:
        os.environ[ENV] = "1" if verbose else "0"
    if is_verbose():
        return True
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    for category, module, message in NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    return False
