"""The HMC benchmark table of issue 6: MLP / max-constraint MLP with several losses vs C-HMCNN.

    CONEHIER_DATA=../shared/data python benchmarks/hmc_table.py --dataset cellcycle_FUN --seeds 3 --threads 1 --workers 2
    CONEHIER_DATA=../shared/data python benchmarks/hmc_table.py --seeds 3 --threads 1 --workers 2   # every row
    python benchmarks/hmc_table.py --table-only            # rebuild the table from saved rows
    python benchmarks/hmc_table.py --speed                 # step speed vs a C-HMCNN-style loop, stack vs one model
    python benchmarks/hmc_table.py --estimate --seeds 3    # measured step cost -> projected row times

A row trains all its configurations x seeds as stacked ensembles
(:mod:`conehier.training.hmc_stacked`: one network with a leading model axis,
one Adam; the same numbers as separate runs up to float rounding): one stack
per group of equal sizes / epochs, at most ``--max-stack`` models each (``auto``:
3 on the CPU, where small stacks are faster per model than one large one, no
limit on a GPU: :func:`conehier.training.hmc_stacked.default_stack_models`),
trained one after the other, or one run
after the other with ``--no-stack``. ``--engine`` picks the stack's training step
(``auto``: on CPU the hand-written backward with Adam fused into the weight
gradient, :mod:`conehier.training.stacked_step`; ``autograd``: autograd + Adam,
as the rows made before it). ``--workers N`` runs the row's configurations in
N processes side by side (e.g. 2 with ``--threads 1`` on 2 cores), each taking
the next configuration as soon as it is free, and records the elapsed time of
all of them as the row's wall time.

Configurations (``--configs``, comma-separated keys): ``mlp-bce`` (MLP, BCE),
``mcm-bce`` (C-HMCNN: max-constraint MLP, BCE), ``mcm-champ-hard``,
``mcm-champ-soft``, ``mcm-rare-node`` (2 output heads), ``mcm-sigmoidf1``.
Sizes are C-HMCNN's per data set (:data:`conehier.training.hmc.CHMCNN_SETTINGS`:
hidden width, lr; 3 layers, dropout 0.7, Adam, weight decay 1e-5, batch 4).

Every row of the committed table is remade by ``--dataset NAME --seeds 3 --threads 1
--workers 2``: options left out take the settings that row was made with
(:data:`ROW_PROTOCOLS`, ``--protocol table``, the default; the row's protocol
column names every one that is not C-HMCNN's) or, with ``--protocol chmcnn``,
C-HMCNN's (batch 4, its learning rate, ``--epochs auto``). The commands below spell
the settings out.

Epochs (``--epochs``): ``auto`` (C-HMCNN's) = C-HMCNN's published epoch count,
trained on train + valid, where it has one, else early stopping on valid
AU(PRC) then retraining on train + valid; or ``published``, ``early-stop``, N.
With published epochs there are no held-out validation scores, so macro F1 and
rare-node recall use the threshold 0.5; with early stopping, per-node
thresholds tuned on valid (PCDB). The row says which. Early stopping runs at
most ``--max-epochs`` (200) epochs with ``--patience`` (20); a model that is done
leaves its stack, in selection and in retraining. pheno_GO (3,128 nodes, no
published C-HMCNN result) is run with a smaller budget, named in its protocol::

    python benchmarks/hmc_table.py --dataset pheno_GO --seeds 3 --threads 1 --workers 2 \
        --max-epochs 60 --patience 10

``--batch-size`` / ``--lr`` replace C-HMCNN's batch 4 and learning rate (the
protocol column names the change). Diatoms and ImCLEF07A are run that way: at
batch 4 and lr 1e-5 their published 474 / 592 epochs would take about 28 / 48
CPU-hours per row here, so they use batch 64, a larger learning rate (Diatoms
5e-4, ImCLEF07A 3e-4) and an epoch count chosen the way C-HMCNN chose its own
(early stopping of MCM-MLP + BCE, seed 0, on a seeded 20% validation split of
train; final training on all of train)::

    python benchmarks/hmc_table.py --dataset Diatoms --configs mcm-bce --seeds 1 --no-stack \
        --batch-size 64 --lr 5e-4 --epochs early-stop --out /tmp/select      # best epoch 96
    python benchmarks/hmc_table.py --dataset Diatoms --seeds 3 --threads 1 --workers 2 \
        --batch-size 64 --lr 5e-4 --epochs 96
    python benchmarks/hmc_table.py --dataset ImCLEF07A --seeds 3 --threads 1 --workers 2 \
        --batch-size 64 --lr 3e-4 --epochs 78

Diatoms is bound by arithmetic at batch 64 (the products run at 60-76 GFLOP/s on one
core), so its row time is set by the epochs: at lr 3e-4 early stopping chose 117
epochs (seed 0: valid 0.723, test 0.757; that row took 27.5 min, with stacks of 9); at
lr 5e-4 it chooses 96 (valid 0.710, test 0.753); at 6e-4, 79 (valid 0.704, test 0.743).

cellcycle_FUN and church_FUN are run at batch 8 with lr 2e-4 (C-HMCNN's 1e-4 scaled with
the batch), gasch2_FUN at batch 16 with lr 4e-4. At batch 4 their rows took 23.4 / 24.6
/ 28.3 min on the 2 cores. A step of 3 stacked models is memory-bound (the Adam update
and the weight reads cost the same at any small batch), so a step at batch 8 takes only
about 1.3x as long as at batch 4 (gasch2: 8.2 vs 6.3 ms, one process) and a step at
batch 16 about 1.7x (10.8 ms); with both cores busy the gain per epoch is smaller: the
gasch2 row at batch 8 (126 epochs) took 38.5 CPU-min against 51.1 at batch 4 (123
epochs), and 20.4 min, so gasch2 went on to batch 16 (8.8 min). That batch-8 row (commit
7040495) had MCM-MLP + BCE at 0.2582, CHAMP-hard and CHAMP-soft at 0.2585, all above
C-HMCNN's 0.258; the batch-16 row has 0.2554 / 0.2550 / 0.2550. The epochs of cellcycle
and gasch2 were chosen the way C-HMCNN chose its own (early stopping of MCM-MLP + BCE,
seed 0, on the valid file, then training on train + valid); church keeps early stopping
for every configuration. Best valid AU(PRC) @ epoch, seed 0::

    data set    batch 8, lr 1e-4   batch 8, lr 2e-4   batch 16, lr 2e-4   batch 16, lr 4e-4
    cellcycle   0.2311 @ 120       0.2326 @ 88        0.2313 @ 126        0.2299 @ 70
    gasch2      0.2330 @ 176       0.2353 @ 126       0.2365 @ 175        0.2346 @ 80
    church      0.1714 @ 82        0.1705 @ 32        --                  0.1703 @ 33

    python benchmarks/hmc_table.py --dataset gasch2_FUN --configs mcm-bce --seeds 1 --no-stack \
        --batch-size 16 --lr 4e-4 --epochs early-stop --out /tmp/select     # best epoch 80

The rule: the smallest batch above C-HMCNN's at which the row fits in 20 minutes, with
the learning rate scaled linearly; at batch 8 the unscaled 1e-4 needs 1.4-2.6x the epochs.

Each data set's row is saved to ``OUT/<data set>.json`` (default
``benchmarks/results/hmc``) as soon as it is done, so the table can be remade
in parts (``--dataset`` repeatable; ``--configs ... --merge`` adds configurations
to a saved row, e.g. two processes with one thread each on two cores); ``OUT/hmc_table.md`` and
``OUT/hmc_table.json`` are rebuilt from every saved row after each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from conehier.data.hmc import HMC_DATASETS, hmc_files, load_hmc
from conehier.data.paths import data_root
from conehier.training.hmc import CHMCNN_SETTINGS, HMCConfig, chmcnn_config, run_hmc, summarize
from conehier.training.hmc_stacked import (
    DEFAULT_STACK_MODELS,
    ENGINES,
    fit_stacked,
    plan_stacks,
    stack_speed,
    stack_step_seconds,
)

#: C-HMCNN's published AU(PRC) (Giunchiglia & Lukasiewicz 2020, Table 2).
PUBLISHED_AUPRC = {
    "cellcycle_FUN": 0.255,
    "derisi_FUN": 0.195,
    "eisen_FUN": 0.306,
    "gasch1_FUN": 0.286,
    "gasch2_FUN": 0.258,
    "seq_FUN": 0.292,
    "spo_FUN": 0.215,
    "Diatoms": 0.758,
    "ImCLEF07A": 0.956,
}

#: key -> (label, model, loss)
CONFIGS = {
    "mlp-bce": ("MLP + BCE", "mlp", "bce"),
    "mcm-bce": ("MCM-MLP + BCE (C-HMCNN)", "mcm-mlp", "bce"),
    "mcm-champ-hard": ("MCM-MLP + CHAMP-hard", "mcm-mlp", "champ-hard"),
    "mcm-champ-soft": ("MCM-MLP + CHAMP-soft", "mcm-mlp", "champ-soft"),
    "mcm-rare-node": ("MCM-MLP + rare-node (H=2)", "mcm-mlp", "rare-node"),
    "mcm-sigmoidf1": ("MCM-MLP + sigmoidF1", "mcm-mlp", "sigmoidf1"),
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "hmc"

#: early stopping's default budget: at most this many epochs, and the patience (epochs without improvement)
MAX_EPOCHS, PATIENCE = 200, 20

#: The settings the committed rows (``benchmarks/results/hmc``) were made with where they are not
#: C-HMCNN's (batch 4, its learning rate, its published epochs or early stopping with the default
#: budget); ``--protocol table`` (the default) takes from here whatever of ``--batch-size``,
#: ``--lr``, ``--epochs``, ``--max-epochs``, ``--patience`` the command line leaves out, so
#: ``--dataset NAME`` alone remakes NAME's row. The module docstring says how each was chosen.
ROW_PROTOCOLS: dict[str, dict] = {
    "cellcycle_FUN": {"batch_size": 8, "lr": 2e-4, "epochs": "88"},
    "church_FUN": {"batch_size": 8, "lr": 2e-4},
    "gasch2_FUN": {"batch_size": 16, "lr": 4e-4, "epochs": "80"},
    "pheno_GO": {"max_epochs": 60, "patience": 10},
    "Diatoms": {"batch_size": 64, "lr": 5e-4, "epochs": "96"},
    "ImCLEF07A": {"batch_size": 64, "lr": 3e-4, "epochs": "78"},
}

#: what an option left out means with ``--protocol chmcnn`` (or for a data set not in :data:`ROW_PROTOCOLS`)
CHMCNN_DEFAULTS = {"batch_size": 4, "lr": None, "epochs": "auto", "max_epochs": MAX_EPOCHS, "patience": PATIENCE}


def row_args(name: str, args) -> argparse.Namespace:
    """``args`` with the options the command line left out (``None``) filled in for row ``name``:
    from :data:`ROW_PROTOCOLS` with ``--protocol table``, else (and for the rest) C-HMCNN's."""
    filled = argparse.Namespace(**vars(args))
    table = ROW_PROTOCOLS.get(name, {}) if getattr(args, "protocol", "table") == "table" else {}
    for key, default in CHMCNN_DEFAULTS.items():
        if getattr(filled, key, None) is None:
            setattr(filled, key, table.get(key, default))
    return filled


def available_datasets(root: Path) -> list[str]:
    """HMC data sets whose files (a training file included) are all under ``root/hmc``."""
    return [n for n in HMC_DATASETS if all((root / "hmc" / f).is_file() for f in hmc_files(n).values())]


def _config(name: str, model: str, loss: str, epochs, args) -> tuple[HMCConfig, str]:
    """The config of one configuration of a row and its protocol text; a batch size or
    learning rate other than C-HMCNN's is named in the protocol (a stated deviation)."""
    over = dict(model=model, loss=loss, batch_size=args.batch_size, threads=args.threads, device=args.device,
                max_epochs=args.max_epochs, patience=args.patience, lr=args.lr)
    final = "train+valid" if "valid" in hmc_files(name) else "train"
    if epochs == "auto":
        epochs = "published" if name in CHMCNN_SETTINGS else "early-stop"
    if epochs == "published":
        cfg, text = chmcnn_config(name, published_epochs=True, **over), f"published epochs, {final}"
    elif epochs == "early-stop":
        valid = "valid" if final == "train+valid" else "a seeded 20% split of train"
        cfg, text = chmcnn_config(name, **over), f"early stopping on {valid}, retrain on {final}"
        if (args.max_epochs, args.patience) != (MAX_EPOCHS, PATIENCE):  # not the defaults: say so
            text += f" (at most {args.max_epochs} epochs, patience {args.patience})"
    else:
        cfg, text = chmcnn_config(name, epochs=int(epochs), **over), f"{int(epochs)} epochs, {final}"
    reference = chmcnn_config(name)
    changed = [f"{label} {getattr(cfg, f):g} (C-HMCNN {getattr(reference, f):g})"
               for f, label in (("batch_size", "batch"), ("lr", "lr")) if getattr(cfg, f) != getattr(reference, f)]
    return cfg, text + ("; " + ", ".join(changed) if changed else "")


def _print_summary(name: str, label: str, summary: dict, seconds: float) -> None:
    m = summary["metrics"]
    print(f"{name:<14} {label:<28} AU(PRC) {m['auprc']:.4f} ± {m['auprc_std']:.4f}  macro F1 {m['macro_f1']:.4f}  "
          f"rare recall {m['rare_recall']:.4f}  epochs {summary['epochs']}  "
          f"{summary['seconds_per_epoch']:.2f} s/epoch (CPU {summary['cpu_seconds_per_epoch']:.2f})  "
          f"{seconds:.0f} s", flush=True)


def row_configs(name: str, args, keys: list[str] | None = None) -> tuple[dict, list[HMCConfig]]:
    """``{key: (config, protocol)}`` of a row (configurations ``keys``, default ``args.configs``)
    and its configs x seeds (seed-major within each key)."""
    keys = args.configs if keys is None else keys
    plan = {key: _config(name, CONFIGS[key][1], CONFIGS[key][2], args.epochs, args) for key in keys}
    cfgs = [dataclasses.replace(plan[key][0], seed=s) for key in keys for s in range(args.seeds)]
    return plan, cfgs


def _max_stack(text: str) -> int | str | None:
    """``--max-stack``: ``auto``, or a number of models (0: no limit, ``None``)."""
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected auto or a number >= 0, got {text!r}")
    return int(text) or None


def greedy_loads(costs: list[float], workers: int) -> list[float]:
    """Total cost per process when ``workers`` processes take jobs of ``costs`` in order, each
    the next job as soon as it is free (how ``--workers`` hands out configurations)."""
    loads = [0.0] * min(workers, len(costs))
    for c in costs:
        k = loads.index(min(loads))
        loads[k] += c
    return loads


#: CPU time of a model-step of each configuration relative to MLP + BCE (stacks of 3 models of
#: one configuration, batch 4): the mean over the cellcycle, church, eisen and gasch2 rows of
#: their CPU seconds per model-epoch (rare-node's 2 heads cost most; sigmoidF1's per-model
#: batch counts and the max-constraint module add a little).
RELATIVE_STEP_COST = {
    "mlp-bce": 1.00,
    "mcm-bce": 1.17,
    "mcm-champ-hard": 1.05,
    "mcm-champ-soft": 1.08,
    "mcm-rare-node": 1.79,
    "mcm-sigmoidf1": 1.24,
}


def job_cost(key: str, heads: int = 1) -> float:
    """Relative cost of configuration ``key`` (:data:`RELATIVE_STEP_COST`; an unlisted one:
    1 + 0.8 per extra output head)."""
    return RELATIVE_STEP_COST.get(key, 1.0 + 0.8 * (heads - 1))


def claim_order(plan: dict, keys: list[str]) -> list[tuple[int, str]]:
    """``(index, key)`` of the configurations in the order ``--workers`` processes take them:
    costliest first (:func:`job_cost`; ties in the row's order), so the last jobs are the
    short ones and the processes end close together (the longest-processing-time rule)."""
    return sorted(enumerate(keys), key=lambda kk: -job_cost(kk[1], plan[kk[1]][0].heads))


def claim(claim_dir: str | None, key: str) -> bool:
    """True if this process may run configuration ``key``: always without ``claim_dir``; with
    it, for the first process to create ``claim_dir/key`` (atomic ``O_EXCL``)."""
    if claim_dir is None:
        return True
    try:
        os.close(os.open(os.path.join(claim_dir, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def estimate(args, root: Path) -> None:
    """Measured cost of one training step of each row's stack(s), projected to the row's training time.

    Projection = CPU seconds per step x ceil(N / batch) steps per epoch x epochs
    (the row's: :data:`ROW_PROTOCOLS`, else C-HMCNN's published count), summed over the stacks of each ``--workers``
    process (configurations handed out in order to the first free process); the
    row's projected wall time is that of its slowest process (each on a core of
    its own). Evaluation and data loading are not included. With
    early stopping the number of epochs is not known in advance: per epoch only.
    """
    names = args.dataset or available_datasets(root)
    print(f"measured: {args.estimate_steps} steps per stack, {args.threads} thread(s), {args.workers} process(es), "
          f"engine {args.engine}, load average {os.getloadavg()[0]:.1f}; projection = per-step CPU time x "
          "steps/epoch x epochs (training only)")
    for name in names:
        a = row_args(name, args)
        ds = load_hmc(name, data_dir=root, download=False)
        n = len(ds.X_train) + (len(ds.X_valid) if ds.X_valid is not None else 0)
        per_epoch = math.ceil(n / a.batch_size)
        per_config = []
        epochs_known = True
        plan, _ = row_configs(name, a)
        for _, key in claim_order(plan, a.configs):  # each configuration is one job of a --workers process
            _, cfgs = row_configs(name, a, [key])
            cpu = 0.0
            for idx in plan_stacks(cfgs, a.max_stack):  # the stacks fit_stacked would train
                part = [cfgs[i] for i in idx]
                _, c = stack_step_seconds(ds, part, steps=a.estimate_steps, repeats=1, engine=a.engine)
                e = part[0].epochs
                epochs_known &= e is not None
                cpu += c * per_epoch * (e or 1)
            per_config.append(cpu)
        per_worker = greedy_loads(per_config, a.workers)
        _, cfgs = row_configs(name, a)
        unit = "row" if epochs_known else "epoch (early stopping: x epochs run)"
        print(f"{name:<14} {len(cfgs):3d} models, hidden {cfgs[0].hidden}, {per_epoch} steps/epoch, "
              f"epochs {cfgs[0].epochs}: CPU {sum(per_worker) / 60:7.1f} min, wall {max(per_worker) / 60:7.1f} min "
              f"per {unit} ({len(per_worker)} process(es))", flush=True)


def _add_stacked(row: dict, name: str, key: str, plan: dict, results: list) -> None:
    """Summarise one configuration's stacked results (its seeds) into ``row`` and print it."""
    summary = summarize(results)
    summary.update(protocol=plan[key][1], label=CONFIGS[key][0], stack_models=results[0].stack_models)
    row["configs"][key] = summary
    _print_summary(name, summary["label"], summary, summary["wall_seconds"])


def run_row(name: str, args, root: Path) -> dict:
    """All configurations x seeds of one data set: one stack per group of equal sizes
    (:func:`conehier.training.hmc_stacked.fit_stacked`), or one run after the other with ``--no-stack``."""
    ds = load_hmc(name, data_dir=root, download=False)
    row = {"dataset": name, "published_auprc": PUBLISHED_AUPRC.get(name), "configs": {},
           "seeds": args.seeds, "machine": f"{platform.machine()} {platform.processor()}".strip(),
           "torch": torch.__version__, "threads": args.threads, "stacked": args.stack,
           "engine": args.engine if args.stack else None, "workers": 1}
    log = (lambda m: print("   ", m, file=sys.stderr, flush=True)) if args.verbose else None
    t_row, c_row = time.perf_counter(), time.process_time()
    plan, cfgs = row_configs(name, args)
    if args.stack and args.claim is None:
        results = fit_stacked(ds, cfgs, max_models=args.max_stack, log=log, engine=args.engine)
        for k, key in enumerate(args.configs):
            _add_stacked(row, name, key, plan, results[k * args.seeds:(k + 1) * args.seeds])
    elif args.stack:  # a --workers process: each configuration no other process has taken
        for k, key in claim_order(plan, args.configs):
            if not claim(args.claim, key):
                continue
            _add_stacked(row, name, key, plan, fit_stacked(ds, cfgs[k * args.seeds:(k + 1) * args.seeds],
                                                           max_models=args.max_stack, log=log, engine=args.engine))
    else:
        for key in args.configs:
            if not claim(args.claim, key):
                continue
            cfg, protocol = plan[key]
            t0 = time.perf_counter()
            summary = run_hmc(ds, cfg, seeds=range(args.seeds), log=log)
            summary.update(protocol=protocol, label=CONFIGS[key][0], stack_models=1)
            row["configs"][key] = summary
            _print_summary(name, summary["label"], summary, time.perf_counter() - t0)
    row["wall_seconds"] = time.perf_counter() - t_row
    row["cpu_seconds"] = time.process_time() - c_row
    row["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    row["command"] = "python benchmarks/hmc_table.py " + " ".join(args.argv)
    return row


def worker_argv(args, name: str, configs: list[str], out: str, claim_dir: str | None = None) -> list[str]:
    """The command line of one worker process of a row run with ``--workers`` (``claim_dir``:
    the directory through which the processes hand out the configurations)."""
    argv = ["--dataset", name, "--configs", ",".join(configs), "--out", out, "--seeds", str(args.seeds),
            "--epochs", str(args.epochs), "--max-epochs", str(args.max_epochs), "--patience", str(args.patience),
            "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--device", args.device,
            "--engine", args.engine, "--max-stack", str(args.max_stack or 0)]
    argv += ["--protocol", getattr(args, "protocol", "table")]
    for flag, value in (("--lr", args.lr), ("--data-dir", args.data_dir), ("--claim", claim_dir)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ["--merge"] + ([] if args.stack else ["--no-stack"]) + (["--verbose"] if args.verbose else [])


def run_row_in_workers(name: str, args) -> dict:
    """One row as ``--workers`` processes side by side; each takes the next configuration
    not yet taken (:func:`claim`) as soon as it is free, so a process whose
    configurations stop early takes more of them, and writes into a scratch
    directory; their rows are combined.

    The row's ``wall_seconds`` is the elapsed time of all workers together (what the
    row costs on a machine with that many free cores), ``cpu_seconds`` the sum of
    theirs; ``parts`` keeps each worker's configurations and times.
    """
    import subprocess

    n = min(args.workers, len(args.configs))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"hmc_{name}_") as tmp:
        claims = Path(tmp) / "claims"
        claims.mkdir()
        argv = worker_argv(args, name, args.configs, tmp, str(claims))
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve())] + argv) for _ in range(n)]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"{name}: worker(s) failed with exit codes {codes}; no row saved")
        row = json.loads((Path(tmp) / f"{name}.json").read_text())  # the workers' rows, merged (--merge)
    row["configs"] = {k: row["configs"][k] for k in args.configs}
    row["parts"] = [dict(p, command=None) for p in row.get("parts") or [_part(row)]]  # commands name the scratch dir
    row["wall_seconds"] = time.perf_counter() - t0
    row["cpu_seconds"] = sum(p["cpu_seconds"] for p in row["parts"])
    row["workers"] = n
    row["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    row["command"] = "python benchmarks/hmc_table.py " + " ".join(args.argv)
    return row


def _part(row: dict) -> dict:
    return {k: row.get(k) for k in ("command", "wall_seconds", "cpu_seconds", "load_average", "threads", "stacked")} | {
        "configs": sorted(row["configs"])}


def save_row(out: Path, row: dict, *, merge: bool = False) -> dict:
    """Write ``OUT/<data set>.json``. ``merge``: keep the configurations of an existing row
    that this one did not run (a row made in parts, e.g. two processes on two cores);
    ``parts`` lists each part's command and times, and the row's ``wall_seconds`` /
    ``cpu_seconds`` are their sums (the time the row takes when its parts run one
    after the other). A lock file serialises concurrent writers."""
    import fcntl

    path = out / f"{row['dataset']}.json"
    lock_path = Path(tempfile.gettempdir()) / f"hmc_table_{hashlib.md5(str(out.resolve()).encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if merge and path.is_file():
            old = json.loads(path.read_text())
            if old.get("seeds") != row.get("seeds"):
                raise ValueError(f"{path}: cannot merge a row with {row.get('seeds')} seeds into one with "
                                 f"{old.get('seeds')}")
            parts = old.get("parts") or [_part(old)]
            parts = [p for p in parts if not set(p["configs"]) <= set(row["configs"])] + [_part(row)]
            merged = dict(old)
            merged.update({k: v for k, v in row.items() if k != "configs"})
            merged["configs"] = {**old["configs"], **row["configs"]}
            merged["parts"] = parts
            merged["wall_seconds"] = sum(p["wall_seconds"] for p in parts)
            cpus = [p.get("cpu_seconds") for p in parts]
            merged["cpu_seconds"] = None if None in cpus else sum(cpus)
            merged["command"] = " ; ".join(p["command"] for p in parts)
            row = merged
        path.write_text(json.dumps(row, indent=1))
    return row


def _fmt(x, nd=3):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def build_table(out: Path) -> str:
    """Markdown from every ``OUT/<data set>.json``; also writes ``hmc_table.md`` / ``hmc_table.json``."""
    rows = []
    for p in sorted(out.glob("*.json")):
        if p.name == "hmc_table.json":
            continue
        rows.append(json.loads(p.read_text()))
    order = {n: i for i, n in enumerate(HMC_DATASETS)}
    rows.sort(key=lambda r: order.get(r["dataset"], 1e9))
    keys = [k for k in CONFIGS if any(k in r["configs"] for r in rows)]
    lines = ["# HMC benchmark: AU(PRC) (pooled micro AP over evaluated nodes, mean ± std over seeds)", ""]
    head = "| data set | C-HMCNN (published) | " + " | ".join(CONFIGS[k][0] for k in keys) + " |"
    lines += [head, "|" + "---|" * (2 + len(keys))]
    for r in rows:
        cells = []
        for k in keys:
            s = r["configs"].get(k)
            cells.append("—" if s is None else f"{s['metrics']['auprc']:.3f} ± {s['metrics']['auprc_std']:.3f}")
        lines.append(f"| {r['dataset']} | {_fmt(r.get('published_auprc'))} | " + " | ".join(cells) + " |")
    lines += ["", "## Details", "",
              "| data set | configuration | AU(PRC) | Δ vs C-HMCNN | macro AP | macro F1 | rare recall | thresholds "
              "| epochs | s/epoch | wall s | protocol |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = r.get("published_auprc")
        for k in keys:
            s = r["configs"].get(k)
            if s is None:
                continue
            m = s["metrics"]
            delta = "—" if pub is None else f"{m['auprc'] - pub:+.3f}"
            lines.append(
                f"| {r['dataset']} | {s['label']} | {m['auprc']:.4f} ± {m['auprc_std']:.4f} | {delta} | "
                f"{m['auprc_macro']:.4f} | {m['macro_f1']:.4f} ± {m['macro_f1_std']:.4f} | "
                f"{m['rare_recall']:.4f} ± {m['rare_recall_std']:.4f} | {s['threshold_source']} | "
                f"{'/'.join(map(str, s['epochs']))} | {s['seconds_per_epoch']:.2f} | {s['wall_seconds']:.0f} | "
                f"{s['protocol']} |")
    lines += ["", "s/epoch and wall s of a stacked row are the stack's, divided by its number of models.", "",
              "## Rows: time and command", "",
              "| data set | models | stacked (step) | processes x threads | row wall min | row CPU min "
              "| load avg (1 min) at end | command |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n_models = sum(len(s.get("seeds", [])) for s in r["configs"].values())
        cpu = r.get("cpu_seconds")
        la = r.get("load_average")
        per_stack = max((s.get("stack_models") or 1 for s in r["configs"].values()), default=1)
        stacked = f"yes ({r.get('engine') or 'autograd'}, {per_stack} per stack)" if r.get("stacked") else "no"
        workers = r.get("workers") or 1
        procs = f"{workers} x {r.get('threads')}"
        if workers == 1 and len(r.get("parts") or []) > 1:
            procs = f"{len(r['parts'])} parts x {r.get('threads')} (wall = sum of parts)"
        lines.append(f"| {r['dataset']} | {n_models} | {stacked} | {procs} | "
                     f"{r['wall_seconds'] / 60:.1f} | {'—' if cpu is None else f'{cpu / 60:.1f}'} | "
                     f"{'—' if not la else f'{la[0]:.1f}'} | `{r.get('command', '')}` |")
    lines += ["", "The machine has 2 cores shared with other jobs: the load average shows the contention "
              "(wall time is larger than CPU time when the load exceeds the cores). Step `autograd`: autograd + "
              "torch.optim.Adam (rows made before the fused step existed); `fused`/`auto`: hand-written backward "
              "with the Adam update fused with the weight gradient (`conehier.training.stacked_step`). With "
              "`--workers N` the row's wall time is the elapsed time of its N processes side by side.", ""]
    text = "\n".join(lines)
    (out / "hmc_table.md").write_text(text)
    (out / "hmc_table.json").write_text(json.dumps(rows, indent=1))
    return text


# --------------------------------------------------------------------------
# Step speed against a C-HMCNN-style training loop
# --------------------------------------------------------------------------
def _reference_steps(ds, hidden: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """Seconds (wall, CPU) for ``steps`` batches of 4 of a loop built the way C-HMCNN's
    ``main.py`` is: a ``DataLoader`` over a list of (x, y) tuples, float64 inputs cast
    per batch, the max-constraint as a dense ``(N, C, C)`` product in float64 (twice per
    step), ``BCELoss`` on probabilities of the evaluated columns, default Adam."""
    nn = torch.nn
    torch.manual_seed(seed)
    X = torch.tensor(np.concatenate([ds.X_train, ds.X_valid]), dtype=torch.float64)
    Y = torch.tensor(np.concatenate([ds.Y_train, ds.Y_valid]), dtype=torch.float64)
    # R[j, k] = 1 iff k is j or a descendant of j
    R = torch.tensor(ds.hierarchy.descendant_matrix(include_self=True), dtype=torch.float64)[None]
    to_eval = torch.tensor(ds.eval_mask)
    c = Y.shape[1]
    net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Dropout(0.7), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Dropout(0.7), nn.Linear(hidden, c), nn.Sigmoid())
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)
    crit = nn.BCELoss()
    loader = torch.utils.data.DataLoader(list(zip(X, Y)), batch_size=4, shuffle=True)

    def mcm(p):
        return torch.max(R.expand(len(p), c, c) * p.double().unsqueeze(1).expand(len(p), c, c), dim=2)[0]

    net.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad()
        out = net(x.float())
        constr = mcm(out)
        train_out = (1 - y) * constr + y * mcm(y * out.double())
        loss = crit(train_out[:, to_eval], y[:, to_eval])
        _ = ((constr.data > 0.5) == y.byte()).sum()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


def _our_steps(ds, hidden: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """Seconds (wall, CPU) for ``steps`` batches of 4 of :class:`HMCTrainer`'s loop (MCM-MLP + BCE)."""
    from conehier.training.hmc import HMCTrainer, build_model, make_loss, _make_optimizer

    cfg = HMCConfig(model="mcm-mlp", loss="bce", hidden=hidden, epochs=1)
    tr = HMCTrainer(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg, ds.n_features, ds.hierarchy)
    opt = _make_optimizer(model, cfg, torch.device("cpu"))
    loss_fn = make_loss(cfg, model, ds.hierarchy, ds.eval_mask, ds.Y_train)
    n = 4 * steps
    X = torch.as_tensor(np.concatenate([ds.X_train, ds.X_valid])[:n])
    Y = torch.as_tensor(np.concatenate([ds.Y_train, ds.Y_valid])[:n], dtype=torch.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    tr._train(model, opt, loss_fn, X, Y, 1, torch.Generator().manual_seed(seed), None)
    return time.perf_counter() - t0, time.process_time() - c0


def speed(args, root: Path) -> None:
    name = (args.dataset or ["cellcycle_FUN"])[0]
    ds = load_hmc(name, data_dir=root, download=False)
    hidden = CHMCNN_SETTINGS.get(name, {"hidden": 500})["hidden"]
    torch.set_num_threads(args.threads)
    n_all = len(ds.X_train) + len(ds.X_valid if ds.X_valid is not None else [])
    steps = min(args.speed_steps, n_all // 4)
    _our_steps(ds, hidden, 20)  # warm-up
    _reference_steps(ds, hidden, 20)
    ours, ref = [], []
    for r in range(args.speed_repeats):  # interleaved, so both see the same machine load
        ours.append(_our_steps(ds, hidden, steps, seed=r))
        ref.append(_reference_steps(ds, hidden, steps, seed=r))
    o, f = np.median(np.array(ours), 0), np.median(np.array(ref), 0)
    epoch = math.ceil(n_all / 4)
    print(f"{name}: {steps} steps of batch 4, median of {args.speed_repeats}, {args.threads} thread(s); "
          f"one epoch on train+valid = {epoch} steps")
    for label, (w, c) in (("C-HMCNN-style loop", f), ("conehier HMCTrainer", o)):
        print(f"  {label:<20} wall {4 * steps / w:7.0f} samples/s ({w / steps * epoch:6.2f} s/epoch)   "
              f"CPU {4 * steps / c:7.0f} samples/s ({c / steps * epoch:6.2f} s/epoch)")
    print(f"  speed-up: wall {f[0] / o[0]:.1f}x, CPU time {f[1] / o[1]:.1f}x")
    # stacked ensembles: per-epoch cost of M models trained as one network
    sizes = [int(x) for x in args.stack_sizes.split(",") if x.strip()]
    cfg = chmcnn_config(name, hidden=hidden, threads=args.threads, model="mcm-mlp", loss="bce")
    times = stack_speed(ds, cfg, sizes, steps=steps, repeats=args.speed_repeats)
    one = times.get(1)
    print(f"{name}: stacked MCM-MLP + BCE, seconds per epoch of the whole stack (and per model)")
    for size, (w, c) in times.items():
        rel = f"   vs {size} x one model: wall {size * one[0] / w:.2f}x, CPU {size * one[1] / c:.2f}x" if one else ""
        print(f"  stack of {size:3d}: wall {w:7.2f} s/epoch ({w / size:5.2f} per model)   "
              f"CPU {c:7.2f} s/epoch ({c / size:5.2f} per model){rel}")
    # a whole row (all configurations x seeds) as one stack vs its runs one after the other
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    _, cfgs = row_configs(name, args)
    k = min(args.speed_steps, 100)
    alone = [stack_step_seconds(ds, [c], steps=k) for c in cfgs]
    w1, c1 = (sum(x) * epoch for x in zip(*alone))
    ws, cs = (x * epoch for x in stack_step_seconds(ds, cfgs, steps=k))
    print(f"{name}: the row's {len(cfgs)} runs ({', '.join(args.configs)} x {args.seeds} seeds), {k} steps each, "
          f"seconds per epoch of all of them")
    print(f"  one after the other: wall {w1:7.2f}  CPU {c1:7.2f}")
    print(f"  one stack          : wall {ws:7.2f}  CPU {cs:7.2f}   speed-up wall {w1 / ws:.2f}x, CPU {c1 / cs:.2f}x")
    # the stack's training step: fused (hand-written backward + fused Adam) vs autograd + Adam, interleaved
    runs = {"autograd": [], ("auto" if args.engine == "autograd" else args.engine): []}
    for _ in range(args.speed_repeats):
        for engine in runs:
            runs[engine].append(stack_step_seconds(ds, cfgs, steps=k, engine=engine))
    (wa, ca), (we, ce) = (np.median(np.array(runs[e]), 0) * epoch for e in runs)
    print(f"  the stack's step, engine autograd: wall {wa:7.2f}  CPU {ca:7.2f}")
    print(f"  the stack's step, engine {list(runs)[1]:<8}: wall {we:7.2f}  CPU {ce:7.2f}   "
          f"speed-up wall {wa / we:.2f}x, CPU {ca / ce:.2f}x")


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", action="append", help="data set row(s) to run (repeatable; default: every one with a training file)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocol", default="table", choices=("table", "chmcnn"),
                    help="what options left out mean: the settings the committed row was made with "
                         "(table, the default: ROW_PROTOCOLS) or C-HMCNN's (chmcnn)")
    ap.add_argument("--epochs", default=None,
                    help="auto (C-HMCNN's default), published, early-stop or a number")
    ap.add_argument("--max-epochs", type=int, default=None, help=f"early stopping: most epochs ({MAX_EPOCHS})")
    ap.add_argument("--patience", type=int, default=None,
                    help=f"early stopping: epochs without improvement ({PATIENCE})")
    ap.add_argument("--batch-size", type=int, default=None, help="batch size (C-HMCNN: 4)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (C-HMCNN's for the data set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from saved rows")
    ap.add_argument("--speed", action="store_true", help="time training steps against a C-HMCNN-style loop")
    ap.add_argument("--speed-steps", type=int, default=300)
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--no-stack", dest="stack", action="store_false",
                    help="train the runs one after the other (HMCTrainer) instead of as stacked ensembles")
    ap.add_argument("--max-stack", type=_max_stack, default="auto",
                    help=f"most models per stack: auto (default: {DEFAULT_STACK_MODELS} on the CPU, no limit on "
                         "a GPU), a number, or 0 (no limit)")
    ap.add_argument("--claim", default=None, help=argparse.SUPPRESS)  # --workers: the hand-out directory
    ap.add_argument("--stack-sizes", default="1,18", help="--speed: stack sizes to time (comma-separated)")
    ap.add_argument("--merge", action="store_true",
                    help="merge the configurations run now into the data set's saved row (a row made in parts)")
    ap.add_argument("--estimate", action="store_true",
                    help="measure a few steps of each row's stack(s) and project the row's training time")
    ap.add_argument("--estimate-steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1,
                    help="run a row's configurations in this many processes side by side (e.g. 2 on 2 cores); "
                         "the row's wall time is then the elapsed time of all of them")
    ap.add_argument("--engine", default="auto", choices=ENGINES,
                    help="stacked training step: fused (hand-written backward + fused Adam), autograd, or auto "
                         "(fused on CPU)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    args.argv = argv
    root = data_root(args.data_dir)
    out = Path(args.out)
    if args.speed:
        speed(args, root)
        return
    if args.estimate:
        args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
        estimate(args, root)
        return
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
        bad = [c for c in args.configs if c not in CONFIGS]
        if bad:
            ap.error(f"unknown configuration(s) {bad}; choose from {', '.join(CONFIGS)}")
        if args.epochs not in (None, "auto", "published", "early-stop") and not args.epochs.isdigit():
            ap.error("--epochs takes auto, published, early-stop or a number")
        names = args.dataset or [n for n in available_datasets(root)]
        for name in names:
            a = row_args(name, args)
            row = run_row(name, a, root) if args.workers == 1 else run_row_in_workers(name, a)
            row["settings"] = {k: getattr(a, k) for k in CHMCNN_DEFAULTS}
            if not row["configs"]:  # a --workers process that found every configuration taken
                continue
            save_row(out, row, merge=args.merge)
            print(f"{name}: row done in {row['wall_seconds'] / 60:.1f} min", flush=True)
    print(build_table(out))


if __name__ == "__main__":
    main()
