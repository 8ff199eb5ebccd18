"""The training loop: reference recipe, periodic resumable checkpoints, DDP through torchrun."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from edge_runtime.errors import SlsgError
from slsg.checkpoint import save_run
from slsg.data.foreground import ProductProfile
from slsg.data.presets import PRESETS
from slsg.data.synthesis import synthesize  # noqa: F401  (imported so a broken data package fails early)
from slsg.data.training_set import SynthesisDataset
from slsg.heads.scoring import fit_scores
from slsg.model import ModelConfig, build_model
from slsg.model.preprocess import InputAdapter, normalization_for
from slsg.training.config import TrainConfig
from slsg.training.data import TrainingData, load_training_data, profile_of
from slsg.training.loss import cosine_lr, slsg_loss
from slsg.training.progress import step_progress, trim_log
from slsg.training.refit import global_head_config
from slsg.training.state import has_state, load_state, read_state_meta, save_state

logger = logging.getLogger(__name__)
LOCO_PRESETS = frozenset(PRESETS) - {"generic"}


class ResumeError(SlsgError, ValueError):
    """`--resume` asked for something the RUN folder cannot continue."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class DrawSampler(Sampler):
    """Step s on rank r draws samples (s·world + r)·batch … +batch−1: disjoint across ranks, fixed by step."""

    def __init__(self, start_step: int, batch: int, dist_info: DistInfo) -> None:
        self.start, self.batch, self.info = start_step, batch, dist_info

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while True:
            base = (step * self.info.world + self.info.rank) * self.batch
            yield from range(base, base + self.batch)
            step += 1


def _dist_setup(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    return torch.device(name)


def train(data: Path, out: Path, model_cfg: ModelConfig, cfg: TrainConfig, category: str | None = None,
          resume: bool = False, progress: bool = True, stop_after: int | None = None,
          prepared: TrainingData | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Train SLSG on the good images of `data` into the RUN folder `out`; returns `out`.

    `stop_after` ends this call after that many steps with a resumable state (used to test resuming).
    `say` receives the warnings a user must see before the run starts (files left out, textures).
    """
    out = Path(out)
    device = resolve_device(cfg.device)
    info = _dist_setup(device)
    torch.manual_seed(cfg.seed)
    td = prepared or load_training_data(Path(data), category, model_cfg.hw, cfg.val_fraction, cfg.seed)
    preset = cfg.preset or td.category.name
    profile = product_profile(td, model_cfg.hw, cfg)
    if info.is_main:
        for line in data_warnings(td, preset, cfg):
            (say or logger.warning)(line)
        if profile is not None:
            logger.info("the good images show %s", profile.describe())
    dataset = SynthesisDataset(td.train_images, preset, model_cfg.hw, seed=cfg.seed,
                               texture_dir=Path(cfg.texture_dir) if cfg.texture_dir else None,
                               color_jitter=(cfg.brightness, cfg.saturation), fix_bugs=cfg.fix_reference_bugs,
                               profile=profile)

    model = build_model(model_cfg, cfg.encoder_weights).to(device)
    adapter = InputAdapter(normalization_for(model_cfg.normalization_name)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    meta = {"model": model_cfg.to_dict(), "train": cfg.to_dict(),
            "data": {**td.fingerprint, "skipped": skipped_files(td)},
            "product": profile.to_dict() if profile is not None else None}

    start = 0
    if resume and has_state(out):
        saved = read_state_meta(out)
        diff = TrainConfig.from_dict(saved.get("train", {})).same_recipe(cfg)
        if saved.get("model") != model_cfg.to_dict() or diff:
            raise ResumeError(f"{out} was trained with another recipe ({diff or 'model config differs'}); "
                              "resume with the same options, or train into a new folder")
        if saved.get("data", {}).get("sha256") != td.fingerprint["sha256"]:
            raise ResumeError(f"the training images changed since {out} was started; train into a new folder")
        start = load_state(out, model, optimizer)
        trim_log(out / "log.jsonl", start)
    elif resume:
        raise ResumeError(f"nothing to resume in {out} (no train_state.json); start without --resume")

    ddp = model
    if info.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    loader = DataLoader(dataset, batch_size=cfg.batch, sampler=DrawSampler(start, cfg.batch, info),
                        num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a") if info.is_main else None  # noqa: SIM115
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    model.train()
    step, t0, last = start, time.perf_counter(), {"loss": float("nan")}
    try:
        with step_progress("train", "loss {task.fields[loss]}",
                           enabled=progress and info.is_main) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=start, loss="–", rate=0.0)  # no step yet: not "nan"
            batches = iter(loader)
            while step < end:
                good, aug, mask = next(batches)
                x = adapter(torch.cat([good, aug]).to(device, non_blocking=True))
                target = torch.cat([torch.zeros_like(mask), mask]).to(device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(step, cfg.steps, cfg.lr)
                logits, aux = ddp(x)
                loss, last = slsg_loss(logits, aux, target, cfg.focal_gamma, (cfg.w_focal, cfg.w_l1, cfg.w_aux))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                rate = (step - start) / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, completed=step, loss=f"{last['loss']:.4f}", rate=rate)
                if log and (step % cfg.log_every == 0 or step == end):
                    log.write(json.dumps({"step": step, "lr": cosine_lr(step - 1, cfg.steps, cfg.lr), **last}) + "\n")
                    log.flush()
                if info.is_main and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < end:
                    save_state(out, model, optimizer, step, meta)
    except KeyboardInterrupt:
        if info.is_main:
            save_state(out, model, optimizer, step, meta)
        raise
    finally:
        if log:
            log.close()

    if info.is_main:
        save_state(out, model, optimizer, step, meta)
        if step >= cfg.steps:
            _finish(out, model, td, cfg, meta)
    if info.world > 1:
        dist.barrier()
    return out


def product_profile(td: TrainingData, hw: tuple[int, int], cfg: TrainConfig) -> ProductProfile | None:
    """What the good images say about the product (object or surface, fixtured or turning), or None for the
    reference's recipe."""
    if cfg.synthesis == "reference":
        return None
    return profile_of(td, hw, cfg.seed)


def skipped_files(td: TrainingData) -> list[dict]:
    """Every training or validation file left out, by name and why: recorded in the RUN's config.json."""
    return [{"path": str(i.path), "problem": i.problem, "fix": i.fix} for i in td.report.skipped]


def data_warnings(td: TrainingData, preset: str, cfg: TrainConfig) -> list[str]:
    """What the user must know before training: files left out (each by name) and the texture source."""
    lines = [f"skipped {i.path}: {i.problem} ({i.fix})" for i in td.report.skipped]
    if lines:
        lines.append(f"{len(lines)} file(s) left out of training; they are listed in the RUN's config.json")
    if preset in LOCO_PRESETS and not cfg.texture_dir:
        lines.append(f"the {preset} recipe of the reference draws texture anomalies from DTD (the Describable "
                     "Textures Dataset); built-in procedural textures are used instead. For the reference recipe, "
                     "download DTD and pass --texture-dir /path/to/dtd/images")
    return lines


def _finish(out: Path, model: torch.nn.Module, td: TrainingData, cfg: TrainConfig, meta: dict) -> None:
    """The final checkpoint is the result (no selection on test data): fit the heads, set the threshold."""

    model.eval()
    config = dict(meta)
    config.update(fit_scores(out, model, td, cfg.head, cfg.fusion_rule, cfg.false_reject_rate,
                             global_head_config(cfg, meta.get("product"), td, model.cfg.hw)))
    save_run(out, model, config)
