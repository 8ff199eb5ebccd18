"""The pre-training loop: pretext batches fixed by (seed, step), periodic resumable state, the encoder file."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.errors import SlsgError
from edge_runtime.preprocess import Normalization
from slsg.checkpoint import write_json
from slsg.model.backbones import load_trunk_weights
from slsg.model.config import ModelConfig
from slsg.model.preprocess import InputAdapter, normalization_for
from slsg.pretraining.config import PretrainConfig
from slsg.pretraining.decoder import PretextNet
from slsg.pretraining.losses import inpainting_losses, position_loss
from slsg.pretraining.pretext import make_pretext
from slsg.pretraining.preview import preview_rows, write_preview
from slsg.pretraining.state import (
    INFO_FILE,
    LOG_FILE,
    PREVIEW_FILE,
    has_state,
    load_state,
    read_state_meta,
    save_encoder,
    save_state,
)
from slsg.training.data import TrainingData, load_training_data
from slsg.training.loop import resolve_device
from slsg.training.progress import step_progress, trim_log


class PretrainResumeError(SlsgError, ValueError):
    """`--resume` asked for something the ENCODER folder cannot continue."""


@dataclass
class StepResult:
    loss: float
    l1: float
    dssim: float
    position: float
    position_acc: float

    def to_dict(self) -> dict[str, float]:
        return {k: (None if math.isnan(v) else round(v, 6)) for k, v in self.__dict__.items()}


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then one cosine to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def _param_groups(net: PretextNet, cfg: PretrainConfig) -> list[dict]:
    """Encoder and head parameters at their own rates; no weight decay on BatchNorm and biases."""
    groups = []
    for part, lr in ((net.encoder, cfg.encoder_lr), (nn.ModuleList([net.decoder, net.position]), cfg.lr)):
        params = [p for p in part.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "base_lr": lr,
                       "weight_decay": cfg.weight_decay})
        groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "base_lr": lr, "weight_decay": 0.0})
    return groups


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def draw_batch(images: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """`batch` distinct images when there are enough, else with repeats."""
    n = images.shape[0]
    idx = torch.randperm(n, generator=gen)[:batch] if n >= batch else torch.randint(n, (batch,), generator=gen)
    return images[idx]


def rgb01(images: torch.Tensor) -> torch.Tensor:
    """uint8 BGR N×H×W×3 → float RGB N×3×H×W in [0, 1]: the inpainting target."""
    return images.permute(0, 3, 1, 2).flip(1).float() / 255.0


def pretext_step(net: PretextNet, adapter: InputAdapter, images: torch.Tensor, cfg: PretrainConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, StepResult]:
    """One forward pass of both pretexts on uint8 BGR `images` (already on the device)."""
    x = adapter(images)
    batch = make_pretext(x, cfg.grid, cfg.mask_ratio, cfg.shuffle_ratio, gen)
    pred, logits = net(batch.inputs)
    l1, dssim = inpainting_losses(pred, rgb01(images), batch.hidden)
    pos, acc = position_loss(logits, batch.origin, batch.moved)
    loss = cfg.w_l1 * l1 + cfg.w_ssim * dssim + cfg.w_position * pos
    return loss, StepResult(loss.item(), l1.item(), dssim.item(), pos.item(), acc)


@torch.no_grad()
def recalibrate_batchnorm(trunk: nn.Module, adapter: InputAdapter, images: torch.Tensor, batch: int,
                          device: torch.device) -> None:
    """Re-estimate the trunk's BatchNorm statistics on clean good images (exact averages, not momentum).

    Pretext inputs have hidden and moved cells; SLSG feeds whole images, so the statistics must come from those.
    """
    norms = [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = trunk.training
    trunk.train()
    for i in range(0, images.shape[0], batch):
        trunk(adapter(images[i:i + batch].to(device)))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    trunk.train(was_training)


def _check_resume(out: Path, cfg: PretrainConfig, td: TrainingData) -> None:
    saved = read_state_meta(out)
    diff = PretrainConfig.from_dict(saved.get("pretrain", {})).same_recipe(cfg)
    if diff:
        raise PretrainResumeError(f"{out} was pre-trained with another recipe ({', '.join(diff)} differ); resume "
                                  "with the same options, or pre-train into a new folder")
    if saved.get("data", {}).get("sha256") != td.fingerprint["sha256"]:
        raise PretrainResumeError(f"the training images changed since {out} was started; pre-train into a new folder")


def pretrain(data: Path, out: Path, cfg: PretrainConfig, category: str | None = None, resume: bool = False,
             progress: bool = True, preview: bool = False, stop_after: int | None = None,
             prepared: TrainingData | None = None) -> Path:
    """Pre-train the encoder on the good training images of `data` into the ENCODER folder `out`; returns `out`.

    `out/encoder.safetensors` holds exactly the trunk's keys: `slsg train --encoder-weights out/encoder.safetensors`.
    `stop_after` ends this call after that many steps with a resumable state (used to test resuming).
    """
    out = Path(out)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    td = prepared or load_training_data(Path(data), category, cfg.size, cfg.val_fraction, cfg.seed)
    images = torch.from_numpy(np.stack(td.train_images))
    norm = normalization_for(ModelConfig(backbone=cfg.backbone, size=cfg.size).normalization_name)
    adapter = InputAdapter(norm).to(device)
    net = PretextNet(cfg.backbone, cfg.grid, cfg.decoder_width)
    init = load_trunk_weights(net.encoder, cfg.backbone, cfg.init)
    net = net.to(device)
    optimizer = torch.optim.AdamW(_param_groups(net, cfg), lr=cfg.lr)
    meta = {"pretrain": cfg.to_dict(), "init": init, "data": td.fingerprint}

    start = 0
    if resume and has_state(out):
        _check_resume(out, cfg, td)
        start = load_state(out, net, optimizer)
        trim_log(out / LOG_FILE, start)
    elif resume:
        raise PretrainResumeError(f"nothing to resume in {out} (no pretrain_state.json); start without --resume")
    elif has_state(out):
        raise PretrainResumeError(f"{out} already holds a pre-training state; continue it with --resume, "
                                  "or pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    step, t0 = start, time.perf_counter()
    net.train()
    bar_fields = ("loss {task.fields[loss]}", "pos-acc {task.fields[acc]}")
    with open(out / LOG_FILE, "a") as log, step_progress("pretrain", *bar_fields, enabled=progress) as bar:
        task = bar.add_task("pretrain", total=cfg.steps, completed=start, loss="–", acc="–")  # no step yet: not "nan"
        try:
            while step < end:
                gen = step_generator(cfg.seed, step)
                batch = draw_batch(images, cfg.batch, gen).to(device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * lr_factor(step, cfg.steps, cfg.warmup_steps)
                loss, result = pretext_step(net, adapter, batch, cfg, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                bar.update(task, completed=step, loss=f"{result.loss:.4f}", acc=f"{result.position_acc:.2f}")
                if step % cfg.log_every == 0 or step == end:
                    log.write(json.dumps({"step": step, "lr": optimizer.param_groups[-1]["lr"],
                                          **result.to_dict()}) + "\n")
                    log.flush()
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < end:
                    save_state(out, net, optimizer, step, meta)
        except KeyboardInterrupt:
            save_state(out, net, optimizer, step, meta)
            raise
    save_state(out, net, optimizer, step, meta)
    if step >= cfg.steps:
        _finish(out, net, adapter, norm, images, cfg, meta, device, preview, time.perf_counter() - t0)
    return out


def _finish(out: Path, net: PretextNet, adapter: InputAdapter, norm: Normalization, images: torch.Tensor,
            cfg: PretrainConfig, meta: dict, device: torch.device, preview: bool, seconds: float) -> None:
    """Preview (before BatchNorm is recalibrated, as trained), then the encoder file and pretrain.json."""
    if preview:
        shown = images[: min(6, images.shape[0])].to(device)
        rows = preview_rows(net, adapter(shown), rgb01(shown), norm, cfg.grid, cfg.mask_ratio,
                            cfg.shuffle_ratio, cfg.seed)
        write_preview(out / PREVIEW_FILE, rows)
    if cfg.recalibrate_bn:
        recalibrate_batchnorm(net.encoder, adapter, images, cfg.batch, device)
    save_encoder(out, net.encoder, cfg.backbone)
    write_json(out / INFO_FILE, {**meta, "losses": loss_summary(out / LOG_FILE),
                                 "seconds_last_session": round(seconds, 1)})


def loss_summary(log_path: Path, n: int = 3) -> dict:
    """Mean of the first and last `n` logged values of every loss: the evidence that the pretexts were learnt."""
    rows = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()] if log_path.is_file() else []
    if not rows:
        return {}
    keys = ("loss", "l1", "dssim", "position", "position_acc")

    def mean(part: list[dict], key: str) -> float | None:
        values = [r[key] for r in part if r.get(key) is not None]
        return round(float(np.mean(values)), 6) if values else None

    return {"first": {k: mean(rows[:n], k) for k in keys}, "last": {k: mean(rows[-n:], k) for k in keys},
            "logged_steps": [rows[0]["step"], rows[-1]["step"]]}
