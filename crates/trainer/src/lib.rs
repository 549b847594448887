//! # petal-trainer
//!
//! The fine-tune recipe (frozen-backbone phase, selective unfreezing with discriminative
//! learning rates, AdamW, cosine annealing with warmup), metrics, checkpoints and plots.
//! Built by the trainer issue; this crate is the place it lands.
#![warn(missing_docs)]
