//! # petal-trainer
//!
//! The fine-tune recipe of the seed article and fastai's `fine_tune`, on Burn:
//!
//! 1. **Frozen phase** (`freeze_epochs`, default 1): the backbone's layer groups are frozen,
//!    the head trains; BatchNorm layers stay trainable (`train_bn`, as fastai).
//! 2. **Unfreeze** all groups at once or one per epoch from the top (`unfreeze`), resetting
//!    the optimizer whenever the trainable set changes, with **discriminative learning
//!    rates**: the head gets `lr`, earlier groups geometrically less down to `lr / lr_mult`.
//!
//! AdamW (decoupled weight decay, one fused pass per parameter on the CPU backend; none on
//! BatchNorm / bias parameters), per-step
//! linear warmup + cosine annealing (Burn's schedulers) or one-cycle, label smoothing,
//! global-norm gradient clipping, training batches through the fused GPU augmentation and
//! validation through the eval transform. Levers beyond the seed's recipe: an exponential
//! moving average of the weights ([`ema`], timm's `ModelEmaV3`), gradient accumulation,
//! class-balanced sampling and class-weighted loss, progressive resizing and `lr = auto`
//! from the learning-rate finder ([`lr_find`]). A run directory holds `config.json`,
//! `classes.json`, `metrics.jsonl` / `metrics.csv`, `curves.png` (the learning rate per
//! step), atomic `best.ckpt` / `last.ckpt` checkpoints from which `--resume` continues
//! exactly, and with `tensorboard` TensorBoard event files under `tb/` ([`tensorboard`]).
#![warn(missing_docs)]

pub mod adamw;
pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ema;
pub mod error;
pub mod eval;
pub mod lr_find;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod schedule;
pub mod tensorboard;
pub mod train;

pub use config::{Cache, FineTuneConfig, Precision, Sampler, Schedule, SyntheticConfig, Unfreeze};
pub use error::TrainError;
pub use eval::{EvalOptions, EvalReport, Split, evaluate, evaluate_with};
pub use lr_find::{LrFindOptions, LrFindResult, lr_find};
pub use train::{StopReason, TrainOptions, TrainOutcome, train};
