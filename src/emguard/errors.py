"""Map emguard's user-facing exceptions to clear messages and exit codes (2 = fix your input)."""

from __future__ import annotations

import logging
import sys
from typing import Callable

log = logging.getLogger("emguard")


def handle(fn: Callable[[], int | None]) -> int:
    from emguard.config import ConfigError
    from emguard.data.io import DataError
    from emguard.models.loading import ModelError

    try:
        return int(fn() or 0)
    except DataError as e:
        print(f"error: invalid training data\n{e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional package a chosen feature needs; the message names it
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as e:  # TrainError and defense errors carry their own advice
        from emguard.eval.judges.base import JudgeError
        from emguard.training.config import TrainError

        if isinstance(e, JudgeError):  # a judge endpoint failed after retries, or refused the key
            print(f"error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, (TrainError, ValueError)):
            print(f"error: {e}", file=sys.stderr)
            return 2 if isinstance(e, ValueError) else 1
        raise
