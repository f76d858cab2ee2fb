"""The training loop: one process on CPU or GPU, or many under ``torchrun`` (DistributedDataParallel).

Rank 0 alone logs, writes ``metrics.jsonl`` and checkpoints. ``last.safetensors`` (the model) and
``last.state.safetensors`` (the model again, optimizer, scaler, RNG, progress) are written atomically
after every epoch. A resume reads the state file alone, so a run killed between the two writes
resumes from the epoch that file records, weights and optimizer of the same step; ``best.safetensors`` keeps the best
validation top-1. ``metrics.jsonl`` holds one line per finished epoch of this run: a fresh run
into a used directory starts a new log, a resumed one keeps the lines of the epochs it resumes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from dcf._io import atomic_write_bytes
from dcf.checkpoint import (
    CheckpointConfig,
    atomic_save,
    model_kwargs_to_json,
    read_checkpoint,
    save_checkpoint,
)
from dcf.data.datasets import MAX_DRAWS, Batch, Broken, ClipDataset, VideoList, collate, read_dataset
from dcf.models import DCFNet
from dcf.training.config import DEFAULT_ARCHITECTURE, TrainConfig

logger = logging.getLogger(__name__)


class BrokenDataset(ValueError):
    """More training videos cannot be decoded than ``data.max_broken`` allows."""


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Joins the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Distributed(int(os.environ.get("RANK", "0")), world_size, device)


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have their label among the top k scores, for each k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to ``peak``, then half-period cosine to zero (paper App. D)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class Evaluation:
    """Top-1 and top-5 (percent) over the ``videos`` that could be decoded; ``failed`` could not
    (``failures`` names those of this process)."""

    top1: float
    top5: float
    videos: int
    failed: int
    failures: list[Broken]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    progress: bool = False,
    known: set[str] | None = None,
) -> Evaluation:
    """Top-1 and top-5 with views (clips x crops) averaged as softmax scores; videos that cannot be
    decoded are counted apart, not scored, and warned about unless in ``known`` (which they join:
    the training loop warns once per run)."""
    model.eval()
    correct1 = correct5 = total = 0
    failures: list[Broken] = []
    batch: Batch
    for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
        for broken in batch.broken:
            if (known is None or broken.path not in known) and (
                not dist.is_initialized() or dist.get_rank() == 0
            ):
                logger.warning("cannot evaluate %s: %s", broken.path, broken.reason)
            if known is not None:
                known.add(broken.path)
        failures += batch.broken
        keep = ~batch.failed
        clips, labels = batch.clips[keep], batch.labels[keep]
        if not len(labels):
            continue
        n, views = clips.shape[:2]  # (N, views, 3, T, S, S)
        scores = model(clips.flatten(0, 1).to(device)).softmax(dim=1).view(n, views, -1).mean(dim=1)
        c1, c5 = topk_correct(scores.cpu(), labels)
        correct1, correct5, total = correct1 + c1, correct5 + c5, total + n
    counts = torch.tensor([correct1, correct5, total, len(failures)], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(counts)
    c1, c5, n, failed = counts.tolist()
    return Evaluation(100 * c1 / max(n, 1), 100 * c5 / max(n, 1), int(n), int(failed), failures)


def _save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    progress: dict[str, Any],
) -> None:
    """Everything a resume needs, in one file (one atomic write): never weights of one epoch with the
    optimizer of another."""
    state = optimizer.state_dict()
    tensors = {
        f"optimizer.{index}.{name}": value
        for index, slots in state["state"].items()
        for name, value in slots.items()
        if isinstance(value, Tensor)
    }
    tensors |= {f"model.{name}": value.detach().clone() for name, value in model.state_dict().items()}
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"param_groups": state["param_groups"], "scaler": scaler.state_dict(), "progress": progress}
    atomic_save(tensors, path, {"dcf_train_state": json.dumps(meta)})


def _load_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["dcf_train_state"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    weights = {
        key.removeprefix("model."): value for key, value in tensors.items() if key.startswith("model.")
    }
    if not weights:  # written by dcf 0.1.0 before the weights moved in: they are beside it
        logger.warning("%s holds no weights (an older run): resuming with last.safetensors", path)
        weights = read_checkpoint(path.with_name("last.safetensors"))[1]
    model.load_state_dict(weights)
    slots: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    if meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    return dict(meta["progress"])


def _loader(
    dataset: ClipDataset, batch_size: int, workers: int, env: Distributed, *, train: bool, seed: int
) -> DataLoader:
    sampler: DistributedSampler | None = (
        DistributedSampler(dataset, env.world_size, env.rank, shuffle=train, seed=seed)
        if env.world_size > 1
        else None
    )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=train,
        collate_fn=collate,
        generator=generator,
        pin_memory=env.device.type == "cuda",
    )


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The per-epoch records of a run's ``metrics.jsonl`` (empty if there is none yet)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _truncate_metrics(path: Path, epochs: int) -> None:
    """Keeps the metrics of the first ``epochs`` epochs: a fresh run starts an empty log, a resumed
    run drops lines of epochs it will train again (written before the run was killed)."""
    kept = [record for record in read_metrics(path) if record["epoch"] <= epochs]
    if path.exists():
        atomic_write_bytes(path, "".join(json.dumps(record) + "\n" for record in kept).encode())


@dataclass
class _Run:
    """What one training run is built from (:func:`_build`)."""

    config: TrainConfig
    env: Distributed
    out: Path
    checkpoint: CheckpointConfig
    model: nn.Module
    train_set: ClipDataset
    train_loader: DataLoader
    val_loader: DataLoader
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool
    per_process: int  # clips per step in each process
    writer: Any = None  # a TensorBoard SummaryWriter (rank 0, with run.tensorboard)
    broken: dict[str, str] = field(default_factory=dict)  # training videos found broken, and why
    val_broken: set[str] = field(default_factory=set)  # validation videos warned about

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def max_broken(self) -> int:
        """The broken training videos tolerated before training stops."""
        return math.floor(self.config.data.max_broken * len(self.train_set) + 1e-9)  # 0.29 * 100 is 29


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Trains as ``config`` says; returns the final validation metrics."""
    run = _build(config, setup_distributed())
    start_epoch, best = _resume(run) if resume else (0, -1.0)
    if run.env.is_main:
        _start_log(run, start_epoch)
    metrics: dict[str, float] = {}
    net: nn.Module = run.model
    frozen: bool | None = None
    try:
        for epoch in range(start_epoch, config.optim.epochs):
            if frozen != (epoch < config.optim.freeze_backbone_epochs):
                frozen = epoch < config.optim.freeze_backbone_epochs
                net = _phase(run, frozen=frozen)
            stats = _train_epoch(run, net, epoch, frozen=frozen, progress=progress and run.env.is_main)
            # The module itself, not its DDP wrapper: a rank whose batch is all undecodable skips the
            # forward, which must then not be a collective.
            val = evaluate(run.model, run.val_loader, run.env.device, known=run.val_broken)
            metrics = {
                "epoch": epoch + 1,
                "loss": stats["loss"],
                "train_top1": stats["top1"],
                "val_top1": val.top1,
                "val_top5": val.top5,
                "lr": stats["lr"],
                "clips_per_s": stats["clips_per_s"],
                "epoch_s": stats["epoch_s"],
                "train_skipped": stats["skipped"],
                "val_failed": val.failed,
                "backbone_frozen": frozen,
            }
            if run.env.is_main:
                best = _end_epoch(run, metrics, best)
            if dist.is_initialized():
                dist.barrier()
    finally:
        if run.writer is not None:
            run.writer.close()
    return metrics


def _phase(run: _Run, *, frozen: bool) -> nn.Module:
    """The network to train in this phase: with the backbone frozen (all but its head: the DCF
    blocks and the head train) or not. Under DDP a new wrapper, which reduces exactly the
    parameters that now train."""
    for module in _frozen_modules(run.model):
        module.requires_grad_(not frozen)
    if run.env.is_main and (frozen or run.config.optim.freeze_backbone_epochs):
        trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in run.model.parameters())
        what = "everything"
        if frozen:
            what = "the DCF blocks and the head" if isinstance(run.model, DCFNet) else "the head alone"
        logger.info("training %s: %d of %d parameters", what, trainable, total)
    return DistributedDataParallel(run.model) if run.env.world_size > 1 else run.model


def _frozen_modules(model: nn.Module) -> list[nn.Module]:
    """What ``--freeze-backbone-epochs`` holds: the backbone but its head."""
    backbone = model.backbone if isinstance(model, DCFNet) else model
    return [module for name, module in backbone.named_children() if name != "head"]


def _build(config: TrainConfig, env: Distributed) -> _Run:
    """The datasets, the model (seeded, from ``model.init`` if set), the loaders, the optimizer,
    the loss scaler and the TensorBoard writer."""
    torch.manual_seed(config.run.seed)
    init = read_checkpoint(config.model.init) if config.model.init else None
    spec = config.data.input_spec(init[0].input_spec if init else None)
    train_videos = read_dataset(config.data.root, config.data.format, config.data.train_split)
    val_videos: VideoList = read_dataset(config.data.root, config.data.format, config.data.val_split)
    if train_videos.classes != val_videos.classes:
        raise ValueError(
            f"train and val splits name different classes: {train_videos.classes} vs {val_videos.classes}"
        )
    architecture = config.model.architecture or (init[0].architecture if init else DEFAULT_ARCHITECTURE)
    kwargs = dict(config.model.kwargs)
    if init:
        if architecture != init[0].architecture:
            raise ValueError(
                f"model.architecture is {architecture}, but the init checkpoint {config.model.init} is "
                f"{init[0].architecture} (leave model.architecture out to take the checkpoint's)"
            )
        kwargs = {**init[0].model_kwargs, **kwargs}
    checkpoint = CheckpointConfig(
        architecture=architecture,
        classes=tuple(train_videos.classes),
        input_spec=spec,
        model_kwargs=model_kwargs_to_json(kwargs),
        recipe=config.to_dict(),
    )
    model = checkpoint.build()
    if init:
        _load_init(model, init, checkpoint, str(config.model.init), log=env.is_main)
    model = model.to(env.device)
    per_process = max(1, config.optim.batch_size // env.world_size)
    train_set = ClipDataset(train_videos, spec, train=True, seed=config.run.seed)
    train_loader = _loader(train_set, per_process, config.data.workers, env, train=True, seed=config.run.seed)
    val_loader = _loader(
        ClipDataset(val_videos, spec, train=False), per_process, config.data.workers, env, train=False, seed=0
    )
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training videos are fewer than one batch of {per_process}")
    use_amp = config.optim.amp and env.device.type == "cuda"
    return _Run(
        config=config,
        env=env,
        out=Path(config.run.out),
        checkpoint=checkpoint,
        model=model,
        train_set=train_set,
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=_optimizer(model, config),
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp),
        use_amp=use_amp,
        per_process=per_process,
        writer=_tensorboard(config.run.tensorboard, create=env.is_main) if config.run.tensorboard else None,
    )


def _load_init(
    model: nn.Module,
    init: tuple[CheckpointConfig, dict[str, Tensor]],
    ours: CheckpointConfig,
    path: str,
    *,
    log: bool,
) -> None:
    """The init checkpoint's weights into ``model``: all of them, strictly, but for a new head where
    the class count differs."""
    source, tensors = init
    head = "backbone.head.fc." if isinstance(model, DCFNet) else "head.fc."
    new_head = len(source.classes) != len(ours.classes)
    if new_head:
        tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith(head)}
    try:
        loaded = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a shape differs
        raise ValueError(f"init {path}: its weights do not fit {ours.architecture}: {exc}") from None
    missing = [name for name in loaded.missing_keys if not (new_head and name.startswith(head))]
    if missing or loaded.unexpected_keys:
        raise ValueError(
            f"init {path}: its weights do not fit {ours.architecture} (missing: {', '.join(missing[:3]) or '-'}; "
            f"unexpected: {', '.join(loaded.unexpected_keys[:3]) or '-'})"
        )
    if not log:
        return
    if new_head:
        logger.info(
            "init %s: every tensor loaded but the head, new for %d classes (the checkpoint's has %d)",
            path,
            len(ours.classes),
            len(source.classes),
        )
        return
    logger.info("init %s: every tensor loaded, the head too (%d classes)", path, len(ours.classes))
    differ = [(a, b) for a, b in zip(source.classes, ours.classes, strict=True) if a != b]
    if differ:
        logger.warning(
            "init %s: the head is kept, but %d class names differ from the dataset's (e.g. %r is now %r): "
            "output i means the dataset's class i",
            path,
            len(differ),
            *differ[0],
        )


def _tensorboard(folder: str, *, create: bool) -> Any:
    """A writer into ``folder`` if ``create`` (rank 0); every rank checks that TensorBoard is there,
    so that all stop alike where it is not."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "run.tensorboard (--tensorboard) needs the tensorboard package: pip install 'dcf[tensorboard]'"
        ) from None
    return SummaryWriter(folder) if create else None


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum; no weight decay on norms and biases."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.optim.lr,
        momentum=config.optim.momentum,
    )


def _resume(run: _Run) -> tuple[int, float]:
    """The first epoch to train and the best top-1 so far, from the run's state file if it has one."""
    path = run.out / "last.state.safetensors"
    if not path.exists():
        logger.info("nothing to resume in %s; starting afresh", run.out)
        return 0, -1.0
    state = _load_state(path, run.model, run.optimizer, run.scaler)
    if run.env.is_main:
        logger.info(
            "resuming %s after epoch %d (best top-1 %.2f%%)", run.out, state["epoch"] + 1, state["best_top1"]
        )
    return state["epoch"] + 1, state["best_top1"]


def _start_log(run: _Run, start_epoch: int) -> None:
    """Prepares the run directory (rank 0): the metrics log cut to the resumed epochs."""
    run.out.mkdir(parents=True, exist_ok=True)
    _truncate_metrics(run.out / "metrics.jsonl", start_epoch)
    if start_epoch == 0:  # a fresh run: an old run's optimizer state must not be resumed later
        (run.out / "last.state.safetensors").unlink(missing_ok=True)
    logger.info(
        "training %s on %d videos (%d classes), %d steps/epoch of %d clips, device %s, %d process(es)",
        run.checkpoint.architecture,
        len(run.train_set),
        len(run.checkpoint.classes),
        run.steps_per_epoch,
        run.per_process * run.env.world_size,
        run.env.device,
        run.env.world_size,
    )


def _train_epoch(run: _Run, net: nn.Module, epoch: int, *, frozen: bool, progress: bool) -> dict[str, float]:
    """One pass over the training set: its mean loss, top-1 (percent), last learning rate, clips
    per second (all processes), seconds and broken videos skipped (all processes)."""
    config, env, optimizer, scaler = run.config, run.env, run.optimizer, run.scaler
    net.train()
    if frozen:  # the frozen backbone's norms keep their statistics too
        for module in _frozen_modules(run.model):
            module.eval()
    run.train_set.epoch = epoch
    loader = run.train_loader
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:  # the same order per epoch, resumed or not
        loader.generator.manual_seed(config.run.seed + epoch)
    total_steps = run.steps_per_epoch * config.optim.epochs
    warmup = round(run.steps_per_epoch * config.optim.warmup_epochs)
    criterion = nn.CrossEntropyLoss()
    loss_sum = correct = seen = skipped = 0.0
    lr = config.optim.lr
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.optim.epochs}", unit="step", disable=not progress)
    batch: Batch
    for i, batch in enumerate(bar):
        _skip_broken(run, batch)
        skipped += len(batch.broken)
        step = epoch * run.steps_per_epoch + i
        lr = learning_rate(step, total_steps, warmup, config.optim.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        clips = batch.clips.to(env.device, non_blocking=True)
        labels = batch.labels.to(env.device, non_blocking=True)
        with torch.autocast(env.device.type, enabled=run.use_amp):
            logits = net(clips)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += float(loss.detach()) * len(labels)
        correct += topk_correct(logits.detach().float().cpu(), labels.cpu(), (1,))[0]
        seen += len(labels)
        if i % config.run.log_every == 0:
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", top1=f"{100 * correct / seen:.1f}", lr=f"{lr:.4f}")
            if run.writer is not None:
                run.writer.add_scalar("train/loss_step", float(loss.detach()), step)
                run.writer.add_scalar("train/lr_step", lr, step)
    elapsed = time.perf_counter() - start
    counts = torch.tensor([skipped], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(counts)
    return {
        "loss": loss_sum / seen,
        "top1": 100 * correct / seen,
        "lr": lr,
        "clips_per_s": seen * env.world_size / elapsed,
        "epoch_s": elapsed,
        "skipped": int(counts[0]),
    }


def _skip_broken(run: _Run, batch: Batch) -> None:
    """Warns once about each broken training video (another was drawn in its place), and stops
    training when more than ``data.max_broken`` of the split is broken, or when no draw decoded.
    Under DDP every rank learns every rank's broken videos each step, so all decide alike."""
    broken, failed = batch.broken, bool(batch.failed.any())
    if dist.is_initialized():
        flags = torch.tensor([len(broken), int(failed)], device=run.env.device)
        dist.all_reduce(flags)
        if flags[0]:
            parts: list[list[Broken] | None] = [None] * run.env.world_size
            dist.all_gather_object(parts, list(broken))
            broken = [video for part in parts for video in part or ()]
        failed = bool(flags[1])
    for video in broken:
        if video.path not in run.broken:
            run.broken[video.path] = video.reason
            if run.env.is_main:
                logger.warning("skipping %s (another video is drawn): %s", video.path, video.reason)
    data = run.config.data
    check = f"dcf data check {data.root} --format {data.format} --split {data.train_split}"
    if len(run.broken) > run.max_broken:
        raise BrokenDataset(
            f"{len(run.broken)} of the {len(run.train_set)} training videos seen so far cannot be decoded, "
            f"more than data.max_broken={data.max_broken:g} of the split allows ({run.max_broken}); "
            f"stopping. List them all with: {check}; then fix or remove them, or raise data.max_broken"
        )
    if failed:
        last = broken[-1]
        raise BrokenDataset(
            f"{MAX_DRAWS} training videos drawn in a row could not be decoded (the last: {last.path}: "
            f"{last.reason}); check the split with: {check}"
        )


# metrics.jsonl key -> TensorBoard tag (one point per epoch)
_TENSORBOARD_TAGS = {
    "loss": "train/loss",
    "train_top1": "train/top1",
    "val_top1": "val/top1",
    "val_top5": "val/top5",
    "lr": "train/lr",
    "clips_per_s": "train/clips_per_s",
    "epoch_s": "train/epoch_s",
    "train_skipped": "train/skipped_broken",
    "val_failed": "val/failed",
}


def _end_epoch(run: _Run, metrics: dict[str, float], best: float) -> float:
    """Logs the epoch and writes the checkpoints and the resume state (rank 0); returns the best
    validation top-1 so far."""
    with (run.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(metrics) + "\n")
    logger.info(
        "epoch %d: loss %.3f, train top-1 %.1f%%, val top-1 %.1f%% top-5 %.1f%%, %.1f clips/s%s",
        metrics["epoch"],
        metrics["loss"],
        metrics["train_top1"],
        metrics["val_top1"],
        metrics["val_top5"],
        metrics["clips_per_s"],
        "".join(
            f", {metrics[key]} {what}"
            for key, what in (
                ("train_skipped", "broken training draws skipped"),
                ("val_failed", "val videos failed"),
            )
            if metrics[key]
        ),
    )
    if run.writer is not None:
        for key, tag in _TENSORBOARD_TAGS.items():
            run.writer.add_scalar(tag, float(metrics[key]), int(metrics["epoch"]))
        run.writer.flush()
    save_checkpoint(run.out / "last.safetensors", run.model, run.checkpoint)
    if metrics["val_top1"] > best:
        best = metrics["val_top1"]
        save_checkpoint(run.out / "best.safetensors", run.model, run.checkpoint)
    progress = {"epoch": int(metrics["epoch"]) - 1, "best_top1": best}
    _save_state(run.out / "last.state.safetensors", run.model, run.optimizer, run.scaler, progress)
    return best
