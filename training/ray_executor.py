"""Units as Ray tasks (``mer-train cv --executor ray``): one task per (model,
configuration, seed, fold), spread over every CPU and GPU of a machine or a Ray cluster.

- The plan (the clip set's images with it) is put once into Ray's object store; each
  worker process reads it from there (zero-copy for the arrays) and keeps the model's
  prepared images between the units it runs, so the cache is read once, by the driver.
- A task trains and tests its unit and writes the unit folder itself, exactly as a local
  run does (a temporary folder renamed when whole), into the run folder: every node must
  see it (a shared filesystem); a worker that cannot write there stops the run, naming
  its host and the folder.
- A task whose worker dies (killed, out of memory, a node lost) is retried by Ray
  (:data:`RETRIES` times); a unit is seeded from (seed, fold) alone, so a retried unit
  gives what it would have given the first time, and the finished run equals a local one.
- Workers are reused on purpose (:data:`WORKER_MAX_CALLS`): a GPU worker keeps running
  units, so it keeps its prepared images and its CUDA context. What it must not keep is
  the memory of the unit before: after every unit it releases the GPU memory PyTorch's
  allocator still caches for it (``torch.cuda.empty_cache``), and a worker given a fraction
  of a GPU (``--unit-gpus 0.5``) is bounded to that fraction of the GPU's memory
  (``torch.cuda.set_per_process_memory_fraction``), so that units sharing a GPU cannot
  starve each other. Each worker sets the run's determinism mode
  (:func:`mer_di.training.determinism.apply_determinism`) before it touches the GPU, and
  reports where the unit ran (host, device, GPU); the driver keeps that per unit
  (:attr:`RayExecutor.where`, :meth:`RayExecutor.placement`).
- Ray is an optional extra (``pip install "mer-di[ray]"``); without it, asking for this
  executor stops with that command.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from pathlib import Path

import torch

from mer_di.errors import MerError, RunError
from mer_di.training.determinism import CUBLAS_WORKSPACE, apply_determinism
from mer_di.training.plan import Plan
from mer_di.training.units import Unit

RAY_INSTALL = 'pip install "mer-di[ray]"  (or: pip install "ray>=2.9")'
RETRIES = 3  # a unit whose worker dies is run again this many times before the run fails
TASK_NAME = "mer_di_unit"  # the worker's process title while it runs a unit ("ray::...")
# How many units a worker process runs before Ray replaces it; 0: no limit. Ray's own
# default (2.x) is no limit for a task whose GPUs come through ``.options()``, as ours do,
# but 1 (a new process per unit) for one declared ``@ray.remote(num_gpus=...)``, and
# ``max_calls`` cannot be set through ``.options()``; so it is set here, at the decoration,
# whatever Ray's default. No limit, because a new process per unit would read the plan
# from the object store, create a CUDA context and prepare the model's images again for
# every unit (seconds each at 224 px); the memory a unit leaves behind is returned after
# it instead (see the module's notes).
WORKER_MAX_CALLS = 0


def _no_token_notice(record: logging.LogRecord) -> bool:
    """Drops Ray's notice that it turned token authentication on (its secure default, for
    a local instance or a cluster whose token this machine has): a library's line that
    asks nothing of the user. Its warning that authentication is off stays."""
    return not record.getMessage().startswith("Token authentication is enabled for this")


def import_ray():
    """The ``ray`` module, or :class:`RunError` with the command that installs it."""
    try:
        import ray
    except ImportError:
        raise RunError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") \
            from None
    return ray


# per worker process: the prepared images of the last (run, model input) it trained on
_BANK: dict[str, object] = {}


def _worker_device(gpus: float) -> torch.device:
    """The device a worker trains on: its first visible GPU (Ray sets
    ``CUDA_VISIBLE_DEVICES`` to the GPUs it gave the task) when the task was given GPUs
    and CUDA is there, else the CPU."""
    if gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _where(device: torch.device) -> dict[str, object]:
    """Where a unit ran: ``host``, ``device`` (``cpu``, ``cuda:0``), and on a GPU its name
    and ``gpu_ids``: the host's GPUs Ray gave the task (its ``CUDA_VISIBLE_DEVICES``,
    e.g. ``'3'``; '' where unset)."""
    where: dict[str, object] = {"host": socket.gethostname(), "device": str(device)}
    if device.type == "cuda":
        where["gpu_name"] = torch.cuda.get_device_name(device)
        where["gpu_ids"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return where


def mer_di_unit(plan: Plan, unit: Unit, units_dir: str, threads: int, gpus: float,
                token: str) -> dict:
    """Train, test and write one unit in a Ray worker given ``gpus`` GPUs (0: the CPU; a
    fraction: that share of one GPU, its memory bounded to the same share).

    Returns ``scores`` (the unit's), ``seconds`` (``images``: preparing the model's input,
    ``unit``: training, testing and writing) and ``where`` (see :func:`_where`), with
    ``started``/``ended`` (wall clock, seconds since the epoch) for the driver to see
    which units overlapped."""
    from mer_di.training.samples import bank_key, model_bank
    from mer_di.training.trainer import run_unit, write_unit

    folder = Path(units_dir)
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise RunError(f"a Ray worker on {socket.gethostname()} cannot write the run folder "
                       f"{folder}: with --executor ray the run folder (--out) must be on a "
                       "filesystem every node sees and can write (NFS, Lustre, ...)")
    started = time.time()
    torch.set_num_threads(max(1, threads))
    device = _worker_device(gpus)
    # before the first kernel: cuBLAS reads its workspace setting when it makes its handle
    apply_determinism(getattr(plan.spec, "determinism", "reproducible"), device)
    if device.type == "cuda" and gpus < 1:
        torch.cuda.set_per_process_memory_fraction(gpus, device)
    start = time.perf_counter()
    cfg = plan.cfgs[unit.model]
    key = f"{token}:{device}:{bank_key(plan, cfg)}"
    if _BANK.get("key") != key:
        _BANK.clear()  # one model input's images at a time, as a local run keeps them
        _BANK.update(key=key, bank=model_bank(plan, cfg, device))  # dynamic images, or flow
    ready = time.perf_counter()
    try:
        result = run_unit(plan, unit, _BANK["bank"])
        write_unit(folder, result)
        scores = dict(result.scores)
        del result  # the model and its checkpoint: freed before the cache is emptied
    finally:
        if device.type == "cuda":  # the unit's activations, gradients, optimiser state
            gc.collect()
            torch.cuda.empty_cache()
    return {"scores": scores,
            "seconds": {"images": ready - start, "unit": time.perf_counter() - ready},
            "where": _where(device), "started": started, "ended": time.time()}


def _cost(plan: Plan, unit: Unit) -> float:
    """A unit's relative training cost: its samples per epoch (a dual-phase setting trains
    on three images a clip; a final unit on every clip)."""
    from mer_di.training.configs import get_config

    clips = len(plan.clips) if unit.fold is None else len(plan.clips) - len(
        plan.folds[unit.seed][unit.fold])
    return clips * (3 if get_config(unit.config).dual else 1)


class RayExecutor:
    """Every unit a Ray task of ``unit_cpus`` CPUs (its torch threads) and ``unit_gpus``
    GPUs (fractions share a GPU; None: 1 when the cluster has GPUs, else 0), on the cluster
    at ``address`` (``auto``, ``HOST:PORT``) or, without one, a Ray instance started on
    this machine for the run."""

    def __init__(self, address: str | None = None, unit_cpus: float = 1.0,
                 unit_gpus: float | None = None, progress: bool = True):
        if unit_cpus <= 0 or (unit_gpus is not None and unit_gpus < 0):
            raise RunError(f"--unit-cpus {unit_cpus} / --unit-gpus {unit_gpus}: CPUs must be "
                           "above 0 and GPUs 0 or more")
        self.address, self.unit_cpus, self.unit_gpus = address, unit_cpus, unit_gpus
        self.progress = progress
        self.task_seconds: list[dict[str, float]] = []  # per finished unit, where time went
        # per finished unit (by name): where it ran (host, device, GPU) and when (wall clock)
        self.where: dict[str, dict[str, object]] = {}

    def placement(self) -> str:
        """Where the finished units ran, one clause per (host, device), e.g. ``'node1
        cuda:0 (NVIDIA H200, GPU 3): 12 units; node2 cpu: 4 units'`` ('' before a run)."""
        counts = Counter((w["host"], w["device"], w.get("gpu_name"), w.get("gpu_ids"))
                         for w in self.where.values())
        parts = []
        for (host, device, gpu, ids), n in sorted(counts.items()):
            detail = ", ".join(x for x in (gpu, f"GPU {ids}" if ids else None) if x)
            parts.append(f"{host} {device}" + (f" ({detail})" if detail else "")
                         + f": {n} unit{'s' if n != 1 else ''}")
        return "; ".join(parts)

    def most_at_once(self) -> int:
        """The most finished units that were running at the same moment (from their wall
        clock start and end; 2 with ``--unit-gpus 0.5`` on one GPU: two shared it)."""
        edges = sorted([(w["started"], 1) for w in self.where.values()]
                       + [(w["ended"], -1) for w in self.where.values()])
        running = most = 0
        for _, step in edges:  # at equal times an end (-1) sorts before a start
            running += step
            most = max(most, running)
        return most

    def task_options(self, plan: Plan) -> dict[str, object]:
        """The Ray options of every unit task: its CPUs and GPUs, the retries; under
        reproducible mode on GPUs, the cuBLAS workspace in the workers' environment (Ray
        starts those workers with it, so it is there before any CUDA context)."""
        options: dict[str, object] = {"name": TASK_NAME, "num_cpus": self.unit_cpus,
                                      "num_gpus": self.unit_gpus, "max_retries": RETRIES,
                                      "retry_exceptions": False}
        if self.unit_gpus and getattr(plan.spec, "determinism",
                                      "reproducible") == "reproducible":
            options["runtime_env"] = {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": os.environ.get(
                "CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)}}
        return options

    def _connect(self, ray) -> bool:
        """Join the cluster (or start a local instance); True when this call started it."""
        if ray.is_initialized():
            return False
        logging.getLogger("ray._private.authentication.authentication_token_setup"
                          ).addFilter(_no_token_notice)
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise RunError(f"--executor ray: cannot start or join {where} ({exc})") from None
        return True

    def run(self, plan: Plan, todo: list[Unit], units_dir, device: torch.device) -> None:
        if not todo:
            return
        ray = import_ray()
        started = self._connect(ray)
        try:
            self._run(ray, plan, todo, Path(units_dir).resolve())
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, plan: Plan, todo: list[Unit], units_dir: Path) -> None:
        resources = ray.cluster_resources()
        if self.unit_gpus is None:
            self.unit_gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if self.unit_gpus and resources.get("GPU", 0) < self.unit_gpus:
            raise RunError(f"--unit-gpus {self.unit_gpus}: the Ray cluster has "
                           f"{resources.get('GPU', 0):g} GPUs")
        slots = int(resources.get("CPU", 1) // self.unit_cpus)
        if self.unit_gpus:
            slots = min(slots, int(resources.get("GPU", 0) // self.unit_gpus))
        task = ray.remote(max_calls=WORKER_MAX_CALLS)(mer_di_unit).options(
            **self.task_options(plan))
        plan_ref = ray.put(plan)  # once: every worker reads the images from the store
        token = uuid.uuid4().hex
        threads = max(1, int(self.unit_cpus))
        # longest first, so that no long unit starts last while the other workers idle
        order = sorted(todo, key=lambda u: -_cost(plan, u))
        pending = {task.remote(plan_ref, unit, str(units_dir), threads, self.unit_gpus,
                               token): unit for unit in order}
        bar = None
        if self.progress:
            from mer_di._progress import progress_bar

            bar = progress_bar(len(todo), "units", "unit")
        failed: list[str] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
                for ref in done:
                    unit = pending.pop(ref)
                    try:
                        done_unit = ray.get(ref)
                        self.task_seconds.append(done_unit["seconds"])
                        self.where[unit.name] = {**done_unit["where"],
                                                 "started": done_unit["started"],
                                                 "ended": done_unit["ended"]}
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                        if isinstance(cause, RunError):  # the shared folder: stop now
                            raise RunError(str(cause)) from None
                        why = str(cause) if isinstance(cause, MerError) else repr(cause)
                        failed.append(f"{unit.name}: {why}")
                    except ray.exceptions.RayError as exc:  # died more than RETRIES times
                        failed.append(f"{unit.name}: its worker died {RETRIES + 1} times "
                                      f"({type(exc).__name__})")
                    if bar:
                        bar.update()
                if bar:
                    bar.set_postfix(running=min(len(pending), slots), failed=len(failed),
                                    refresh=False)
        finally:
            if bar:
                bar.close()
            for ref in pending:  # an interrupted driver: the rest need not run
                ray.cancel(ref, force=True)
        for stale in units_dir.glob(".tmp-*"):  # left by workers that died mid-write
            shutil.rmtree(stale, ignore_errors=True)
        if failed:
            raise RunError(f"{len(failed)} of {len(todo)} units failed on Ray (the others are "
                           f"written; --resume runs the rest): " + "; ".join(failed[:5]))
