//! emonet: on-device facial emotion recognition.
//!
//! The pipeline, one module per stage, read top to bottom:
//! [`camera`] (V4L2 or replay) → [`vision`] (detect faces, classify expressions) →
//! [`track`] (stable ids, smoothing, hysteresis) → [`event`] (JSON payloads) → [`mqtt`].
//! [`daemon`] wires them together; [`config`] is the operator's interface.
pub mod bench;
pub mod broker;
pub mod camera;
pub mod classify_cmd;
pub mod config;
pub mod cpu;
pub mod daemon;
pub mod eval;
pub mod event;
pub mod frame;
pub mod handoff;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod pipeline;
pub mod reuse;
pub mod track;
pub mod vision;
