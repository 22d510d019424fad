"""Entry point torchrun starts on every process: `run.py --job <job folder> [--resume] [--stop-after N]`.

A failure prints `error[CODE]: message` on stderr, records it in `<job>/errors/rank-R.json` (fopeify reports
the first failing rank's error) and exits with status 3; torchrun then stops the other ranks."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Optional, Sequence

ERROR_EXIT = 3


def _bootstrap_path() -> None:
    """The job's python/ folder (parent of this package) holds fopeify_torch and fopeify_train."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    # Run as a script, this package's own folder is sys.path[0]: its modules must not shadow others.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if root not in sys.path:
        sys.path.insert(0, root)
    sys.dont_write_bytecode = True


def record_error(job: str, code: str, message: str) -> None:
    rank = os.environ.get("RANK", "0")
    message = " ".join(message.split())
    sys.stderr.write(f"error[{code}]: rank {rank}: {message}\n")
    try:
        folder = os.path.join(job, "errors")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"rank-{rank}.json"), "w", encoding="utf-8") as fh:
            json.dump({"rank": int(rank), "code": code, "message": message, "time": time.time()}, fh)
    except OSError:
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description="fopeify's PyTorch trainer (started by torchrun)")
    parser.add_argument("--job", required=True, help="job folder (job.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--stop-after", type=int, default=None, help="end after N steps of this run with a checkpoint")
    args = parser.parse_args(argv)
    _bootstrap_path()
    from fopeify_torch.fope_spec import FopeError
    from fopeify_train.job import JobError, read_job
    from fopeify_train.parallel import init_processes
    from fopeify_train.trainer import Trainer

    try:
        job = read_job(os.path.abspath(args.job))
        place = init_processes(job.parallel)
        trainer = Trainer(job, place, args.stop_after)
        if args.resume:
            trainer.resume()
        trainer.run()
        return 0
    except (JobError, FopeError) as err:
        record_error(args.job, err.code, err.message)
    except MemoryError:
        record_error(args.job, "INTERNAL", "out of memory")
    except Exception as err:  # noqa: BLE001 - every failure becomes one line for fopeify
        last = traceback.extract_tb(err.__traceback__)[-1:]
        where = f" ({os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
        record_error(args.job, "INTERNAL", f"{type(err).__name__}: {err}{where}")
    return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
