//! `emonet watch`: subscribes to emonet topics on a broker and prints each message as one
//! readable line, read through the typed payloads of [`crate::event`].

use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::event::{EventPayload, StatePayload, StatsPayload};

/// `emonet watch` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[arg(long, default_value = "localhost")]
    pub host: String,
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Topic filter.
    #[arg(long, default_value = "emonet/#")]
    pub topic: String,
    /// Print topic and raw payload instead of a readable line.
    #[arg(long)]
    pub raw: bool,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
}

/// Watches until Ctrl-C or `--count` messages.
pub fn run(args: &WatchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        tokio::select! {
            r = watch(args) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// Subscribes to `args.topic` and prints what arrives, reconnecting with backoff.
pub async fn watch(args: &WatchArgs) -> Result<()> {
    let (host, port) = (args.host.as_str(), args.port);
    let id = format!("emonet-watch-{}", std::process::id());
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(15));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let mut seen = 0usize;
    let mut backoff = Duration::from_millis(250);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                eprintln!("watching {} on {host}:{port} (Ctrl-C to stop)", args.topic);
                client.subscribe(&args.topic, QoS::AtLeastOnce).await?;
                backoff = Duration::from_millis(250);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let text = String::from_utf8_lossy(&p.payload);
                if args.raw {
                    println!("{} {}", p.topic, text);
                } else {
                    println!("{}", describe_message(&p.topic, &text));
                }
                seen += 1;
                if args.count.is_some_and(|c| seen >= c) {
                    let _ = client.disconnect().await;
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("broker {host}:{port}: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One line a person can read for a message on an emonet topic; a payload that is not the
/// topic's typed payload is printed as it is.
pub fn describe_message(topic: &str, payload: &str) -> String {
    let leaf = topic.rsplit('/').next().unwrap_or(topic);
    let line = match leaf {
        "events" => serde_json::from_str::<EventPayload>(payload)
            .ok()
            .map(|e| describe_event(&e)),
        "state" => serde_json::from_str::<StatePayload>(payload)
            .ok()
            .map(|s| describe_state(topic, &s)),
        "stats" => serde_json::from_str::<StatsPayload>(payload)
            .ok()
            .map(|s| describe_stats(topic, &s)),
        _ => None,
    };
    line.unwrap_or_else(|| format!("{topic} {payload}"))
}

fn describe_event(e: &EventPayload) -> String {
    let prev = e
        .previous
        .as_ref()
        .map(|p| format!(" (was {} for {:.1}s)", p.emotion, p.duration_s))
        .unwrap_or_default();
    format!(
        "{} #{} face {} {:<8} {:<9} {:>3.0}%{}",
        e.ts,
        e.seq,
        e.track_id,
        e.kind,
        e.emotion,
        e.confidence * 100.0,
        prev
    )
}

fn describe_state(topic: &str, s: &StatePayload) -> String {
    let faces: Vec<String> = s
        .faces
        .iter()
        .map(|f| format!("{}={}", f.track_id, f.emotion))
        .collect();
    format!("{topic} state: {} face(s) {}", faces.len(), faces.join(" "))
}

fn describe_stats(topic: &str, s: &StatsPayload) -> String {
    let f = &s.frames;
    format!(
        "{topic} stats: camera {} frames {}/{} processed, {} dropped, {} corrupt",
        s.camera, f.processed, f.captured, f.dropped, f.corrupt
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BoxPayload, Previous};

    #[test]
    fn readable_lines_from_typed_payloads() {
        let t = crate::mqtt::Topics::new("emonet", "kiosk");
        let ev = EventPayload {
            schema: 1,
            kind: "changed".into(),
            device_id: "kiosk".into(),
            ts: "T".into(),
            seq: 3,
            track_id: 1,
            emotion: "happy".into(),
            confidence: 0.9,
            scores: [("happy".to_string(), 0.9)].into_iter().collect(),
            previous: Some(Previous {
                emotion: "sad".into(),
                duration_s: 2.0,
            }),
            bbox: BoxPayload {
                x: 0.1,
                y: 0.1,
                w: 0.2,
                h: 0.2,
            },
        };
        let line = describe_message(&t.events, &serde_json::to_string(&ev).unwrap());
        assert!(
            line.contains("happy") && line.contains("90%") && line.contains("was sad"),
            "{line}"
        );
        let stats = StatsPayload {
            camera: "streaming".into(),
            ..StatsPayload::default()
        };
        let line = describe_message(&t.stats, &serde_json::to_string(&stats).unwrap());
        assert!(line.contains("camera streaming"), "{line}");
        // not the topic's payload: printed as it came
        assert_eq!(
            describe_message(&t.events, "{}"),
            format!("{} {{}}", t.events)
        );
    }
}
