"""Executing a run's units. :class:`LocalExecutor` runs them one after another in this
process; a distributed executor (Ray, one task per unit) plugs in at the same seam: it
gets the plan and the units still to do, and each unit writes its own folder
(:func:`mer_di.training.trainer.write_unit`), so it does not matter where or in which order
the units ran.
"""

from __future__ import annotations

from typing import Protocol

import torch

from mer_di.training.plan import Plan
from mer_di.training.samples import ImageBank, bank_key, model_bank
from mer_di.training.trainer import run_unit, write_unit
from mer_di.training.units import Unit


class Executor(Protocol):
    def run(self, plan: Plan, todo: list[Unit], units_dir, device: torch.device) -> None:
        """Run every unit of ``todo`` and write its folder under ``units_dir``."""


class LocalExecutor:
    """Units in this process, grouped by (model, configuration, seed), with progress bars
    (``progress``); a model's images are prepared once and reused by its units."""

    def __init__(self, progress: bool = True, threads: int | None = None):
        self.progress = progress
        self.threads = threads  # torch threads while units run (None: torch's default)

    def run(self, plan: Plan, todo: list[Unit], units_dir, device: torch.device) -> None:
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            self._run(plan, todo, units_dir, device)
        finally:
            torch.set_num_threads(before)

    def _run(self, plan: Plan, todo: list[Unit], units_dir, device: torch.device) -> None:
        with _Writer() as writer:
            self._train(plan, todo, units_dir, device, writer)

    def _train(self, plan: Plan, todo: list[Unit], units_dir, device: torch.device,
               writer: _Writer) -> None:
        bank: ImageBank | None = None
        runs: dict[tuple[str, str, int], list[Unit]] = {}
        for u in todo:
            runs.setdefault((u.model, u.config, u.seed), []).append(u)
        bars = _Bars(self.progress, len(runs))
        for (model, config, seed), units in runs.items():
            bars.run(f"{model} {config} seed {seed}", len(units))
            cfg = plan.cfgs[model]
            if bank is None or bank.key != bank_key(plan, cfg):
                bank = None  # one model's images in memory at a time
                bank = model_bank(plan, cfg, device)  # dynamic images, or flow
            for unit in units:
                bars.fold(unit.fold, plan.spec.train.epochs)
                result = run_unit(plan, unit, bank, on_epoch=bars.epoch)
                writer.write(units_dir, result)  # the next unit trains while this one saves
                bars.fold_done(result.scores)
            bars.run_done()
        bars.close()


class _Writer:
    """Writes unit folders in one background thread, so that saving a checkpoint (about
    0.5 GB for VGG-19) never holds up the next unit's training. At most one write waits:
    :meth:`write` first finishes the one before (and raises its error), so memory holds at
    most two units' results, and the folders are written in order. Leaving the ``with``
    block waits for the last write (and raises its error)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mer-di-writer")
        self._pending = None

    def write(self, units_dir, result) -> None:
        self.wait()
        self._pending = self._pool.submit(write_unit, units_dir, result)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.wait()
            elif self._pending is not None:  # an error while training: finish the last save
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)


class _Bars:
    """Progress bars: runs, folds of the current run, epochs of the current fold."""

    def __init__(self, enabled: bool, runs: int):
        self.enabled = enabled
        if enabled:
            from mer_di._progress import progress_bar

            self._bar = progress_bar
            self.runs = progress_bar(runs, "runs", "run", position=0)
        self.folds = self.epochs = None

    def run(self, label: str, folds: int) -> None:
        if self.enabled:
            self.folds = self._bar(folds, label, "fold", position=1, leave=False)

    def fold(self, fold: int | None, epochs: int) -> None:
        if self.enabled:
            self.epochs = self._bar(epochs, "final" if fold is None else f"fold {fold}",
                                    "epoch", position=2, leave=False)

    def epoch(self, record: dict) -> None:
        if self.enabled:
            self.epochs.set_postfix(loss=f"{record['train_loss']:.3f}",
                                    val=f"{record['val_loss']:.3f}", refresh=False)
            self.epochs.update()

    def fold_done(self, s: dict) -> None:
        if self.enabled:
            self.epochs.close()
            if "uf1" in s:
                self.folds.set_postfix(last_uf1=f"{s['uf1']:.3f}", refresh=False)
            self.folds.update()

    def run_done(self) -> None:
        if self.enabled:
            self.folds.close()
            self.runs.update()

    def close(self) -> None:
        if self.enabled:
            self.runs.close()
