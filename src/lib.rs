//! emonet: on-device facial emotion recognition.
//!
//! # Layout
//!
//! The pipeline, one module per stage, in the order a frame travels:
//! - [`camera`]: frame sources (V4L2 or replayed images) behind one trait; [`frame`] is the unit
//!   they yield and the one image decoder.
//! - [`vision`]: BlazeFace face detection and the emotion classifier, both run by tract.
//!   [`tract_ops`] holds our own operators inside tract's plans (3×3 depthwise convolution,
//!   max-pool).
//! - [`reuse`]: a face's recent scores standing in for classifying it again.
//! - [`follow`]: between full detections, each face found again near where it was.
//! - [`pipeline`]: one frame through the models (detect, then classify or reuse each face).
//! - [`track`]: stable face ids, score smoothing, hysteresis on emotion changes.
//! - [`event`]: the JSON payloads published over MQTT (the versioned public interface).
//! - [`mqtt`]: the bounded outbox, the publisher task, Home Assistant discovery.
//! - [`daemon`]: `emonet run`: capture thread, the frame [`daemon::Worker`] (used by the bench
//!   too), supervision, stats, shutdown.
//!
//! Around it: [`config`] (the operator's settings, one type per stage, checked once),
//! [`handoff`] (newest-frame-wins between capture and inference), [`broker`] (the embedded MQTT
//! broker), [`logging`], [`cpu`] (SIMD features, `/proc` memory figures), [`alloc`] (the
//! allocator that keeps activations' pages between frames), [`shutdown`] (one stop
//! signal for threads and tasks). [`cli`] holds the
//! command line's subcommands (classify, eval, bench, watch, …); the daemon does not use it.

// The pipeline.
pub mod camera;
pub mod daemon;
pub mod event;
pub mod follow;
pub mod frame;
pub mod mqtt;
pub mod pipeline;
pub mod reuse;
pub mod track;
pub mod tract_ops;
pub mod vision;

// Around it.
pub mod alloc;
pub mod broker;
pub mod config;
pub mod cpu;
pub mod handoff;
pub mod logging;
pub mod ratelimit;
pub mod shutdown;
pub mod tls;
pub mod web;

// The command line's subcommands.
pub mod cli;
