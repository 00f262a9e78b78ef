"""Typed configuration saved with every model, so a detector is rebuilt from its files alone."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

SeriesScoreName = Literal["neg_elbo", "nll_iwae", "recon_error", "iwae_rate"]
ScoreName = Literal["neg_elbo", "nll_iwae", "recon_error", "iwae_rate", "iwae_rate_recon"]


class VAEConfig(BaseModel):
    """Hyper-parameters of a :class:`~vae_core.VAEDetector` (and of the time-series detector).

    Every field has a default; ``VAEDetector(seed=0, latent_dim=4)`` overrides single fields.
    Unknown names are rejected, so a typo is an error rather than a silently ignored setting.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 0

    # --- architecture -----------------------------------------------------------------------
    latent_dim: Optional[int] = Field(None, ge=1, description="None: chosen from the input width")
    hidden_dims: Optional[list[int]] = Field(
        None, description="Encoder widths; the decoder mirrors them. None: chosen from the input width; [] is linear"
    )
    decoder_variance: Literal["feature", "row"] = Field(
        "row",
        description="Gaussian variance of numeric features: predicted per row (heteroscedastic), or one per feature",
    )
    row_logvar_range: Optional[float] = Field(
        None, gt=0, description='With decoder_variance="row": how far (in log-variance) a row may move from its column\'s learned variance'
    )
    student_dof: Optional[float] = Field(
        None, gt=0, description="Numeric likelihood: None = Gaussian, else Student-t with these degrees of freedom"
    )
    min_logvar: float = Field(-6.0, description="Lower clamp of Gaussian log-variances (keeps the NLL finite)")
    max_logvar: float = Field(6.0)
    scaling: Literal["robust", "standard"] = Field(
        "robust", description="Numeric columns: median/IQR, or mean/standard deviation"
    )
    dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout after each hidden layer of the encoder and decoder while training (0: none)"
    )
    max_categories: int = Field(64, ge=1, description="Most frequent categories kept per column; the rest share one slot")

    # --- training ---------------------------------------------------------------------------
    max_epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=2)
    max_steps: Optional[int] = Field(4000, ge=1, description="Cap on optimiser steps, so big tables train in bounded time")
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    kl_warmup_epochs: int = Field(10, ge=0, description="beta rises linearly from 0 to 1 over these epochs")
    free_bits: float = Field(0.0, ge=0, description="Nats per latent dimension below which the KL is not penalised")
    trim_fraction: float = Field(
        0.0, ge=0, lt=0.5, description="After warm-up, leave the worst this fraction of each batch out of the loss"
    )
    patience: int = Field(15, ge=1, description="Epochs without a better validation ELBO before stopping")
    validation_fraction: float = Field(0.2, gt=0, lt=0.9)
    max_train_rows: Optional[int] = Field(None, ge=10, description="Subsample training rows above this count")

    # --- scoring ----------------------------------------------------------------------------
    elbo_samples: int = Field(16, ge=1, description="S: Monte Carlo samples for neg_elbo")
    iwae_samples: int = Field(16, ge=1, description="K: importance samples for nll_iwae")
    score_batch_size: int = Field(8192, ge=1)
    anomaly_score: ScoreName = Field(
        "iwae_rate",
        description='The score flags are based on: one of the score columns, "iwae_rate" = nll_iwae + rate_weight * '
        'KL(q(z|x) || p(z)), or "iwae_rate_recon" = the sum of the robust z-scores of iwae_rate and of recon_error, '
        "each (x - median) / IQR of the held-out validation rows of fit (tables only)",
    )
    rate_weight: float = Field(
        2.0, ge=0, description='With anomaly_score="iwae_rate": extra weight on the rate, the nats the encoder needs for the row'
    )

    # --- threshold --------------------------------------------------------------------------
    threshold_method: Literal["quantile", "pot", "fixed"] = Field(
        "quantile", description='"quantile", "pot", or "fixed": fixed_threshold as given (e.g. set from reviews)'
    )
    fixed_threshold: Optional[float] = Field(None, description='The threshold of threshold_method="fixed"')
    contamination: float = Field(0.01, gt=0, lt=0.5, description="Target false-positive rate of the quantile rule")
    pot_risk: float = Field(1e-3, gt=0, lt=0.5, description="Tail probability of the POT threshold")
    pot_level: float = Field(0.95, gt=0.5, lt=1, description="Quantile where the POT tail starts")

    # --- hardware ---------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(True, description="bf16/fp16 autocast on CUDA; ignored on the CPU")

    @model_validator(mode="after")
    def _check(self) -> "VAEConfig":
        if self.min_logvar >= self.max_logvar:
            raise ValueError("min_logvar must be below max_logvar")
        if (self.threshold_method == "fixed") != (self.fixed_threshold is not None):
            raise ValueError('fixed_threshold is given exactly when threshold_method="fixed"')
        return self


class TimeSeriesConfig(VAEConfig):
    """:class:`VAEConfig` plus the sliding-window settings of :class:`~vae_core.TimeSeriesVAEDetector`."""

    window: int = Field(32, ge=2, description="Points per window")
    anomaly_score: SeriesScoreName = Field(
        "iwae_rate", description='As in VAEConfig, without "iwae_rate_recon" (tables only)'
    )
    trim_fraction: float = Field(
        0.05, ge=0, lt=0.5,
        description="As in VAEConfig; 0.05 by default here: a series' history holds its own anomalies (spikes, "
        "shifts), and windows that are fitted to them stop standing out",
    )
    rate_weight: Optional[float] = Field(
        None, ge=0,
        description='As in VAEConfig, but None by default here: "balanced", set in fit to the ratio of the spreads '
        "(interquartile ranges) of nll_iwae and of the rate's per-point share on the held-out tail, so the two "
        "parts weigh alike whatever the window and however well the model fitted",
    )
    point_score: Literal["mean", "last"] = Field(
        "mean",
        description='How a timestamp gets its score: "mean" over every window that covers it (uses up to '
        'window-1 later points), or "last": from the one window that ends at it (past points only, so '
        "scores never change when later data arrives: the streaming choice)",
    )
    calendar: bool = Field(
        True,
        description="Condition the encoder and decoder on the time of day (and day of week, when training spans two "
        "weeks) at each window's end, as sin/cos: datetime times only",
    )
    condition_on_series: bool = Field(
        True, description="Condition on which series a window is from (one-hot; fleets of 2 to 64 series)"
    )
    threshold_method: Literal["quantile", "pot", "fixed"] = Field(
        "pot",
        description='As in VAEConfig, but "pot" by default here: a held-out tail without anomalies (a retrained '
        "model's, whose champion's flags were left out) puts a 1% quantile at a 1% false-alarm rate, more than a "
        "series' share of anomalies; POT places it at pot_risk",
    )
    tail_fence: Optional[float] = Field(
        6.0, gt=0,
        description="Held-out tail scores above q75 + tail_fence x IQR are left out of the threshold's calibration "
        "(anomalies the tail held, which would lift the threshold); None keeps every tail score",
    )
    threshold_per_series: bool = Field(
        False, description="A threshold per series, each placed by threshold_method on that series' held-out tail"
    )
    mask_flagged_past: bool = Field(
        False,
        description='With point_score="last": score each point from the window ending at it with the earlier points '
        "that the unmasked causal score flags marked missing, so an anomaly does not raise the scores of the normal "
        "points after it (fewer false flags on a review queue, lower AUROC where labels span the aftermath, as on "
        "NAB); a batch then needs 2 x (window - 1) points of context, and training holes windows (missing_injection). "
        "Ignored offline",
    )
    missing_injection: Optional[float] = Field(
        None, ge=0, le=1,
        description="Share of training windows that lose one random block of 1 to window/2 points each epoch "
        "(Donut's missing-data injection), so the encoder learns windows with holes, as mask_flagged_past makes them; "
        "None: 0.5 with mask_flagged_past (without it, the masked scores lost flag precision), else 0",
    )
    duplicates: Optional[Literal["first", "last", "mean"]] = Field(
        None,
        description="Rows of one series with the same time (a repeated daylight-saving hour in naive local time): "
        'None refuses them (DataError naming the rows); "first" / "last" keep the values of the first / last such '
        'row in frame order, "mean" averages each value column over them. Every row keeps a score: that of its time. '
        "Applies in fit and in every scoring call",
    )
    train_stride: int = Field(1, ge=1, description="Step between training windows")
    max_train_windows: Optional[int] = Field(20000, ge=10)
