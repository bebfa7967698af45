"""Independent runs spread over devices: one worker process per GPU (or CPU slot).

The rounds of a run, the points of a sweep and the configurations of an
ablation never exchange anything, so the cheapest way to use several GPUs for
them is one ordinary process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``
(no DDP, no all-reduce: the speed-up is the number of GPUs, as long as there
is work for all of them). ``iqalib train CONFIG --devices 0,1`` spreads a
run's rounds this way; :func:`iqalib.experiments.run_many` spreads whole runs.
On a CPU, ``--devices cpu,cpu`` (or ``--jobs 2``) runs two CPU workers.

Each worker is ``python -m iqalib.engine.parallel JOB.json``: it trains its
rounds exactly as :func:`iqalib.engine.fit.fit` would (same seeds, same
folders); the parent writes ``summary.json`` once every round is done. The
parent holds the run folder's lock for its workers (they find its pid in
``$IQALIB_RUN_LOCK_HOLDER``, see :mod:`iqalib.engine.runlock`), and passes a
SIGTERM or SIGHUP on to them, so they save and stop as it does.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iqalib.config import RunConfig, from_dict
from iqalib.engine import distributed
from iqalib.engine.fit import as_config, fit, fit_rounds, write_summary
from iqalib.engine.runfolder import holding_run
from iqalib.engine.runlock import HOLDER_ENV
from iqalib.errors import ConfigError, IQAError

# torchrun's variables: a worker is an independent single process, never a rank.
_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                       "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@dataclasses.dataclass
class Job:
    """One worker's work: ``rounds`` of ``config`` (None: the whole run, summary included)."""

    config: RunConfig
    rounds: list[int] | None = None
    resume: bool = False

    def describe(self) -> str:
        what = "all rounds" if self.rounds is None else f"round(s) {', '.join(map(str, self.rounds))}"
        return f"run {self.config.name!r} ({what})"


def parse_devices(devices: str | None = None, jobs: int | None = None) -> list[str] | None:
    """``--devices 0,1`` / ``--devices cpu,cpu`` / ``--jobs 2`` as a list of slots; None: neither given."""
    if devices is not None and jobs is not None:
        raise ConfigError("give --devices or --jobs, not both (--jobs N is --devices cpu,...,cpu)")
    if jobs is not None:
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs} must be at least 1")
        return ["cpu"] * jobs
    if devices is None:
        return None
    slots = [d.strip() for d in str(devices).split(",") if d.strip()]
    bad = [d for d in slots if d != "cpu" and not d.isdigit()]
    if not slots or bad:
        raise ConfigError(f"--devices {devices!r} must list GPU indices or 'cpu', comma-separated "
                          "(e.g. --devices 0,1 or --devices cpu,cpu)")
    return slots


def _worker_env(device: str, n_slots: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARIABLES}
    # "" hides every GPU from a CPU worker; an index pins a GPU worker to its own GPU (cuda:0 inside).
    env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    # N workers sharing the machine's cores: N threads each would oversubscribe them.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_slots)))
    env[HOLDER_ENV] = str(os.getpid())  # the run locks this process holds are the worker's too
    return env


def _start(job: Job, device: str, n_slots: int, folder: Path) -> subprocess.Popen:
    config = job.config.to_dict()
    if device == "cpu":
        config["train"]["device"] = "cpu"
    spec = folder / f"job-{os.getpid()}-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps({"config": config, "rounds": job.rounds, "resume": job.resume}))
    return subprocess.Popen([sys.executable, "-m", "iqalib.engine.parallel", str(spec)],
                            env=_worker_env(device, n_slots))


def run_jobs(jobs: list[Job], devices: list[str], *, poll_seconds: float = 0.2) -> None:
    """Run every job in its own process, one at a time per device slot; raise if any failed.

    After a failure no new job starts (the running ones finish, so their
    epochs are saved); the error names every failed job.
    """
    if not devices:
        raise ConfigError("no devices to run on; pass GPU indices or 'cpu' (e.g. devices=['cpu'])")
    if distributed.is_distributed():
        raise ConfigError("independent runs over devices (--devices/--jobs, run_many) start their own "
                          "processes; run them without torchrun")
    pending = list(jobs)
    free = list(devices)
    running: list[tuple[subprocess.Popen, str, Job]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="iqalib-jobs-") as folder:
        try:
            while running or (pending and not failed):
                while pending and free and not failed:
                    device = free.pop(0)
                    job = pending.pop(0)
                    running.append((_start(job, device, len(devices), Path(folder)), device, job))
                time.sleep(poll_seconds)
                for entry in list(running):
                    proc, device, job = entry
                    if proc.poll() is None:
                        continue
                    running.remove(entry)
                    free.append(device)
                    if proc.returncode:
                        failed.append(f"{job.describe()} on device {device} (exit status {proc.returncode})")
        except BaseException as exc:
            # Ctrl-C reaches the workers too (same process group); SIGTERM and SIGHUP were sent to
            # this process only: pass them on. Either way, let the workers save and stop.
            signum = getattr(exc, "signum", None)
            for proc, _, _ in running:
                if signum not in (None, signal.SIGINT) and proc.poll() is None:
                    proc.send_signal(signum)
            for proc, _, _ in running:
                proc.wait()
            raise
    if failed:
        skipped = f"; {len(pending)} job(s) not started" if pending else ""
        raise IQAError(f"{len(failed)} of {len(jobs)} job(s) failed: {'; '.join(failed)}{skipped}; "
                       "see their errors above, then rerun with --resume")


def fit_parallel(config, devices: list[str], *, resume: bool = False, force: bool = False) -> dict:
    """:func:`~iqalib.engine.fit.fit` with the rounds spread over ``devices``, one process each.

    Round ``r`` goes to slot ``r % len(devices)``; every round trains as in
    :func:`fit` (same seeds, same folders and files) and ``summary.json`` is
    written once all are done. ``resume`` and ``force`` as for :func:`fit`.
    Returns what :func:`fit` returns.
    """
    config = as_config(config)
    n_rounds = config.train.rounds
    slots = list(devices)[: max(1, min(len(devices), n_rounds))]
    groups = [list(range(n_rounds))[i:: len(slots)] for i in range(len(slots))]
    with holding_run(config, resume=resume, force=force):
        run_jobs([Job(config, group, resume) for group in groups], slots)
        rounds = [json.loads((config.run_dir / f"round_{r}" / "results.json").read_text())
                  for r in range(n_rounds)]
        return write_summary(config, rounds)


# ------------------------------------------------------------ the worker
def _work(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    config = from_dict(spec["config"])
    try:
        if spec["rounds"] is None:
            fit(config, resume=spec["resume"])
        else:
            fit_rounds(config, spec["rounds"], resume=spec["resume"])
    except IQAError as exc:
        print(f"error: [{config.name}] {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # fit's message says what last.pt holds
        print(f"interrupted: [{config.name}] {str(exc) or 'finished epochs are saved'}", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(_work(sys.argv[1]))
