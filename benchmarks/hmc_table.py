"""The HMC benchmark table of issue 6: MLP / max-constraint MLP with several losses vs C-HMCNN.

    CONEHIER_DATA=../shared/data python benchmarks/hmc_table.py --dataset cellcycle_FUN [--seeds 3]
    python benchmarks/hmc_table.py --table-only            # rebuild the table from saved rows
    python benchmarks/hmc_table.py --speed                 # step speed vs a C-HMCNN-style loop

Configurations (``--configs``, comma-separated keys): ``mlp-bce`` (MLP, BCE),
``mcm-bce`` (C-HMCNN: max-constraint MLP, BCE), ``mcm-champ-hard``,
``mcm-champ-soft``, ``mcm-rare-node`` (2 output heads), ``mcm-sigmoidf1``.
Sizes are C-HMCNN's per data set (:data:`conehier.training.hmc.CHMCNN_SETTINGS`:
hidden width, lr; 3 layers, dropout 0.7, Adam, weight decay 1e-5, batch 4).

Epochs (``--epochs``): ``auto`` (default) = C-HMCNN's published epoch count,
trained on train + valid, where it has one, else early stopping on valid
AU(PRC) then retraining on train + valid; or ``published``, ``early-stop``, N.
With published epochs there are no held-out validation scores, so macro F1 and
rare-node recall use the threshold 0.5; with early stopping, per-node
thresholds tuned on valid (PCDB). The row says which.

Each data set's row is saved to ``OUT/<data set>.json`` (default
``benchmarks/results/hmc``) as soon as it is done, so the table can be remade
in parts (``--dataset`` repeatable); ``OUT/hmc_table.md`` and
``OUT/hmc_table.json`` are rebuilt from every saved row after each run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conehier.data.hmc import HMC_DATASETS, hmc_files, load_hmc
from conehier.data.paths import data_root
from conehier.training.hmc import CHMCNN_SETTINGS, HMCConfig, chmcnn_config, run_hmc

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


def available_datasets(root: Path) -> list[str]:
    """HMC data sets whose files (a training file included) are all under ``root/hmc``."""
    return [n for n in HMC_DATASETS if all((root / "hmc" / f).is_file() for f in hmc_files(n).values())]


def _config(name: str, model: str, loss: str, epochs, args) -> tuple[HMCConfig, str]:
    over = dict(model=model, loss=loss, batch_size=args.batch_size, threads=args.threads, device=args.device,
                max_epochs=args.max_epochs, patience=args.patience)
    if epochs == "auto":
        epochs = "published" if name in CHMCNN_SETTINGS else "early-stop"
    if epochs == "published":
        return chmcnn_config(name, published_epochs=True, **over), "published epochs, train+valid"
    if epochs == "early-stop":
        return chmcnn_config(name, **over), "early stopping on valid, retrain on train+valid"
    return chmcnn_config(name, epochs=int(epochs), **over), f"{int(epochs)} epochs, train+valid"


def run_row(name: str, args, root: Path) -> dict:
    ds = load_hmc(name, data_dir=root, download=False)
    row = {"dataset": name, "published_auprc": PUBLISHED_AUPRC.get(name), "configs": {},
           "seeds": args.seeds, "machine": f"{platform.machine()} {platform.processor()}".strip(),
           "torch": torch.__version__, "threads": args.threads}
    log = (lambda m: print("   ", m, file=sys.stderr, flush=True)) if args.verbose else None
    t_row = time.perf_counter()
    for key in args.configs:
        label, model, loss = CONFIGS[key]
        cfg, protocol = _config(name, model, loss, args.epochs, args)
        t0 = time.perf_counter()
        summary = run_hmc(ds, cfg, seeds=range(args.seeds), log=log)
        summary["protocol"] = protocol
        summary["label"] = label
        row["configs"][key] = summary
        m = summary["metrics"]
        print(f"{name:<14} {label:<28} AU(PRC) {m['auprc']:.4f} ± {m['auprc_std']:.4f}  macro F1 {m['macro_f1']:.4f}  "
              f"rare recall {m['rare_recall']:.4f}  epochs {summary['epochs']}  "
              f"{summary['seconds_per_epoch']:.2f} s/epoch (CPU {summary['cpu_seconds_per_epoch']:.2f})  "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    row["wall_seconds"] = time.perf_counter() - t_row
    row["command"] = "python benchmarks/hmc_table.py " + " ".join(args.argv)
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
              "| epochs | s/epoch (batch 4) | wall s | protocol |",
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
    lines += ["", "Row wall times (all configurations and seeds): " + ", ".join(
        f"{r['dataset']} {r['wall_seconds'] / 60:.1f} min" for r in rows), ""]
    cmds = sorted({r.get("command", "") for r in rows if r.get("command")})
    if cmds:
        lines += ["Made with:", ""] + [f"    {c}" for c in cmds] + [""]
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


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", action="append", help="data set row(s) to run (repeatable; default: every one with a training file)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", default="auto", help="auto (default), published, early-stop or a number")
    ap.add_argument("--max-epochs", type=int, default=200, help="early stopping: most epochs")
    ap.add_argument("--patience", type=int, default=20, help="early stopping: epochs without improvement")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from saved rows")
    ap.add_argument("--speed", action="store_true", help="time training steps against a C-HMCNN-style loop")
    ap.add_argument("--speed-steps", type=int, default=300)
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.argv = argv
    root = data_root(args.data_dir)
    out = Path(args.out)
    if args.speed:
        speed(args, root)
        return
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
        bad = [c for c in args.configs if c not in CONFIGS]
        if bad:
            ap.error(f"unknown configuration(s) {bad}; choose from {', '.join(CONFIGS)}")
        if args.epochs not in ("auto", "published", "early-stop") and not args.epochs.isdigit():
            ap.error("--epochs takes auto, published, early-stop or a number")
        names = args.dataset or [n for n in available_datasets(root)]
        for name in names:
            row = run_row(name, args, root)
            (out / f"{row['dataset']}.json").write_text(json.dumps(row, indent=1))
            print(f"{name}: row done in {row['wall_seconds'] / 60:.1f} min", flush=True)
    print(build_table(out))


if __name__ == "__main__":
    main()
