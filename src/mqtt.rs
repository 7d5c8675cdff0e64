//! MQTT publishing through rumqttc: availability with last will, QoS 1 events, retained state,
//! periodic stats.
//!
//! rumqttc neither backs off between reconnects nor re-publishes anything after one, and with a
//! clean session it forgets unacknowledged publishes. So this module keeps its own bounded
//! [`Outbox`] of events (oldest dropped and counted when full, so a dead broker never grows
//! memory), hands events to rumqttc only while connected, keeps each one until its PUBACK, and
//! puts unacknowledged ones back at the head of the queue when the connection drops (QoS 1 is
//! at-least-once: a duplicate after a reconnect is allowed, a loss is not). State and stats are
//! "latest value" slots rather than queue entries: after an outage only the newest matters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{watch, Notify};

use crate::config::MqttConfig;
use crate::event::MqttCounts;

/// The topics of one device, `<prefix>/<device_id>/<leaf>`.
#[derive(Debug, Clone)]
pub struct Topics {
    pub availability: String,
    pub events: String,
    pub state: String,
    pub stats: String,
}

impl Topics {
    pub fn new(prefix: &str, device_id: &str) -> Self {
        let t = |leaf: &str| format!("{prefix}/{device_id}/{leaf}");
        Topics {
            availability: t("availability"),
            events: t("events"),
            state: t("state"),
            stats: t("stats"),
        }
    }
}

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// Shared between the inference worker (producer) and the publisher task (consumer).
pub struct Outbox {
    capacity: usize,
    inner: Mutex<OutboxInner>,
    wake: Notify,
    dropped: AtomicU64,
    published: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

#[derive(Default)]
struct OutboxInner {
    events: VecDeque<Vec<u8>>,
    /// Newest retained state not yet published (cleared once handed over).
    state_dirty: bool,
    state: Option<Vec<u8>>,
    stats: Option<Vec<u8>>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Outbox {
            capacity: capacity.max(1),
            inner: Mutex::new(OutboxInner::default()),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        })
    }

    /// Queues one event payload; when full, the oldest queued event is dropped and counted.
    pub fn push_event(&self, payload: Vec<u8>) {
        {
            let mut inner = self.inner.lock().expect("outbox lock");
            if inner.events.len() >= self.capacity {
                inner.events.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            inner.events.push_back(payload);
        }
        self.wake.notify_one();
    }

    /// Replaces the retained state snapshot.
    pub fn set_state(&self, payload: Vec<u8>) {
        {
            let mut inner = self.inner.lock().expect("outbox lock");
            inner.state = Some(payload);
            inner.state_dirty = true;
        }
        self.wake.notify_one();
    }

    pub fn set_stats(&self, payload: Vec<u8>) {
        self.inner.lock().expect("outbox lock").stats = Some(payload);
        self.wake.notify_one();
    }

    pub fn counts(&self) -> MqttCounts {
        MqttCounts {
            connected: self.connected.load(Ordering::Relaxed),
            queued: self.inner.lock().expect("outbox lock").events.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    fn pop_event(&self) -> Option<Vec<u8>> {
        self.inner.lock().expect("outbox lock").events.pop_front()
    }

    /// Puts unacknowledged events back in front, in their original order.
    fn requeue_front(&self, events: Vec<Vec<u8>>) {
        let mut inner = self.inner.lock().expect("outbox lock");
        for e in events.into_iter().rev() {
            inner.events.push_front(e);
        }
        while inner.events.len() > self.capacity {
            inner.events.pop_back();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take_state(&self, force: bool) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().expect("outbox lock");
        if inner.state_dirty || force {
            inner.state_dirty = false;
            inner.state.clone()
        } else {
            None
        }
    }

    fn take_stats(&self) -> Option<Vec<u8>> {
        self.inner.lock().expect("outbox lock").stats.take()
    }

    fn is_idle(&self) -> bool {
        let inner = self.inner.lock().expect("outbox lock");
        inner.events.is_empty() && !inner.state_dirty
    }
}

/// A publish handed to rumqttc, kept until it is on the wire (and, for events, acknowledged).
struct Handed {
    event: Option<Vec<u8>>,
    qos: QoS,
}

/// Home Assistant discovery: (config topic, retained config payload) for the device's sensors.
/// They read the retained `state` topic, so HA needs nothing else from us.
pub fn homeassistant_discovery(
    prefix: &str,
    device_id: &str,
    topics: &Topics,
) -> Vec<(String, Vec<u8>)> {
    let node = format!(
        "emonet_{}",
        device_id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let device = serde_json::json!({
        "identifiers": [node],
        "name": format!("emonet {device_id}"),
        "model": "emonet",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let sensor = |key: &str, name: &str, template: &str, extra: serde_json::Value| {
        let mut cfg = serde_json::json!({
            "name": name,
            "unique_id": format!("{node}_{key}"),
            "object_id": format!("{node}_{key}"),
            "state_topic": topics.state,
            "value_template": template,
            "availability_topic": topics.availability,
            "device": device,
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        (
            format!("{prefix}/sensor/{node}/{key}/config"),
            serde_json::to_vec(&cfg).unwrap_or_default(),
        )
    };
    vec![
        sensor(
            "emotion",
            "Emotion",
            "{{ value_json.faces[0].emotion if value_json.faces | length > 0 else 'none' }}",
            serde_json::json!({"icon": "mdi:emoticon-outline"}),
        ),
        sensor(
            "faces",
            "Faces in view",
            "{{ value_json.faces | length }}",
            serde_json::json!({"icon": "mdi:account-group", "state_class": "measurement"}),
        ),
    ]
}

/// How many publishes may be in rumqttc's hands at once; the rest wait in the [`Outbox`].
const MAX_HANDED: usize = 32;

pub fn mqtt_options(cfg: &MqttConfig, device_id: &str, topics: &Topics) -> MqttOptions {
    let client_id = if cfg.client_id.is_empty() {
        format!("emonet-{device_id}")
    } else {
        cfg.client_id.clone()
    };
    let mut opts = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    opts.set_clean_session(true);
    opts.set_last_will(LastWill::new(
        topics.availability.clone(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    if !cfg.username.is_empty() {
        opts.set_credentials(cfg.username.clone(), cfg.password.clone());
    }
    opts
}

/// Runs until `shutdown` turns true; then flushes what it can (bounded by a timeout),
/// publishes `offline` and disconnects.
pub async fn run_publisher(
    cfg: MqttConfig,
    topics: Topics,
    device_id: String,
    outbox: Arc<Outbox>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let opts = mqtt_options(&cfg, &device_id, &topics);
    let (client, mut eventloop) = AsyncClient::new(opts, MAX_HANDED * 2 + 8);
    let initial = Duration::from_millis(cfg.reconnect_initial_ms.max(10));
    let max_backoff = Duration::from_millis(cfg.reconnect_max_ms.max(cfg.reconnect_initial_ms));
    let mut backoff = initial;
    let mut connected = false;
    let mut ever_connected = false;
    let mut handed: VecDeque<Handed> = VecDeque::new();
    let mut awaiting: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
    let ha_status = format!("{}/status", cfg.discovery_prefix);
    let discovery = if cfg.homeassistant {
        homeassistant_discovery(&cfg.discovery_prefix, &device_id, &topics)
    } else {
        Vec::new()
    };

    let publish = |handed: &mut VecDeque<Handed>,
                   topic: &str,
                   qos: QoS,
                   retain: bool,
                   payload: Vec<u8>,
                   event: bool|
     -> bool {
        let keep = event.then(|| payload.clone());
        match client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                handed.push_back(Handed { event: keep, qos });
                true
            }
            Err(_) => false,
        }
    };

    while !*shutdown.borrow() {
        if connected {
            if let Some(state) = outbox.take_state(false) {
                publish(
                    &mut handed,
                    &topics.state,
                    QoS::AtLeastOnce,
                    true,
                    state,
                    false,
                );
            }
            if let Some(stats) = outbox.take_stats() {
                publish(
                    &mut handed,
                    &topics.stats,
                    QoS::AtMostOnce,
                    false,
                    stats,
                    false,
                );
            }
            while handed.len() + awaiting.len() < MAX_HANDED {
                let Some(ev) = outbox.pop_event() else { break };
                if !publish(
                    &mut handed,
                    &topics.events,
                    QoS::AtLeastOnce,
                    false,
                    ev.clone(),
                    true,
                ) {
                    outbox.requeue_front(vec![ev]);
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = outbox.wake.notified(), if connected => {}
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    outbox.connected.store(true, Ordering::Relaxed);
                    if ever_connected {
                        outbox.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    backoff = initial;
                    log::info!("connected to MQTT broker {}:{}", cfg.host, cfg.port);
                    // A new clean session: whatever rumqttc still held is gone, so the retained
                    // topics are written again before anything else.
                    publish(&mut handed, &topics.availability, QoS::AtLeastOnce, true, ONLINE.into(), false);
                    if let Some(state) = outbox.take_state(true) {
                        publish(&mut handed, &topics.state, QoS::AtLeastOnce, true, state, false);
                    }
                    if cfg.homeassistant {
                        let _ = client.try_subscribe(ha_status.as_str(), QoS::AtLeastOnce);
                        for (topic, payload) in &discovery {
                            publish(&mut handed, topic, QoS::AtLeastOnce, true, payload.clone(), false);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ha_status && &p.payload[..] == b"online" => {
                    // Home Assistant restarted and lost its non-retained view: announce again.
                    for (topic, payload) in &discovery {
                        publish(&mut handed, topic, QoS::AtLeastOnce, true, payload.clone(), false);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(h) = handed.pop_front() {
                        match (h.qos, h.event) {
                            (QoS::AtMostOnce, _) | (_, None) => {
                                if h.qos == QoS::AtMostOnce {
                                    outbox.published.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            (_, Some(ev)) => awaiting.push_back((pkid, ev)),
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(i) = awaiting.iter().position(|(p, _)| *p == ack.pkid) {
                        awaiting.remove(i);
                    }
                    outbox.published.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        log::warn!("MQTT connection to {}:{} lost: {e}; reconnecting", cfg.host, cfg.port);
                    } else {
                        log::debug!("MQTT connect to {}:{} failed: {e}; retry in {backoff:?}", cfg.host, cfg.port);
                    }
                    connected = false;
                    outbox.connected.store(false, Ordering::Relaxed);
                    let unacked: Vec<Vec<u8>> = awaiting
                        .drain(..)
                        .map(|(_, ev)| ev)
                        .chain(handed.drain(..).filter_map(|h| h.event))
                        .collect();
                    outbox.requeue_front(unacked);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }

    if connected {
        finish(
            &client,
            &mut eventloop,
            &topics,
            &outbox,
            &mut handed,
            &mut awaiting,
        )
        .await;
    } else {
        log::warn!(
            "stopping while disconnected from the broker: {} events not delivered",
            outbox.counts().queued
        );
    }
    Ok(())
}

/// Clean shutdown: deliver the queued events and the final state, then `offline`, then
/// DISCONNECT (which also tells the broker not to send the last will). Bounded in time so a
/// stuck broker cannot block the service stop.
async fn finish(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    topics: &Topics,
    outbox: &Outbox,
    handed: &mut VecDeque<Handed>,
    awaiting: &mut VecDeque<(u16, Vec<u8>)>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut offline_sent = false;
    let mut disconnect_sent = false;
    loop {
        if !offline_sent {
            while let Some(ev) = outbox.pop_event() {
                if client
                    .try_publish(&topics.events, QoS::AtLeastOnce, false, ev.clone())
                    .is_err()
                {
                    outbox.requeue_front(vec![ev]);
                    break;
                }
                handed.push_back(Handed {
                    event: Some(ev),
                    qos: QoS::AtLeastOnce,
                });
            }
            if let Some(state) = outbox.take_state(false) {
                if client
                    .try_publish(&topics.state, QoS::AtLeastOnce, true, state)
                    .is_ok()
                {
                    handed.push_back(Handed {
                        event: None,
                        qos: QoS::AtLeastOnce,
                    });
                }
            }
            if outbox.is_idle()
                && client
                    .try_publish(&topics.availability, QoS::AtLeastOnce, true, OFFLINE)
                    .is_ok()
            {
                handed.push_back(Handed {
                    event: None,
                    qos: QoS::AtLeastOnce,
                });
                offline_sent = true;
            }
        }
        // Disconnect once everything, `offline` included, is acknowledged.
        if offline_sent && !disconnect_sent && handed.is_empty() && awaiting.is_empty() {
            let _ = client.try_disconnect();
            disconnect_sent = true;
        }
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => {
                log::warn!("MQTT shutdown timed out; some messages may not have been delivered");
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => {
                log::info!("published offline and disconnected from the broker");
                return;
            }
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(h) = handed.pop_front() {
                    if h.qos != QoS::AtMostOnce {
                        awaiting.push_back((pkid, h.event.unwrap_or_default()));
                    }
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(i) = awaiting.iter().position(|(p, _)| *p == ack.pkid) {
                    awaiting.remove(i);
                }
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// `emonet watch`: subscribes to every emonet topic on a broker and prints messages readably.
pub async fn watch(
    host: &str,
    port: u16,
    filter: &str,
    raw: bool,
    count: Option<usize>,
) -> Result<()> {
    let id = format!("emonet-watch-{}", std::process::id());
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(15));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let mut seen = 0usize;
    let mut backoff = Duration::from_millis(250);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                eprintln!("watching {filter} on {host}:{port} (Ctrl-C to stop)");
                client.subscribe(filter, QoS::AtLeastOnce).await?;
                backoff = Duration::from_millis(250);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let text = String::from_utf8_lossy(&p.payload);
                if raw {
                    println!("{} {}", p.topic, text);
                } else {
                    println!("{}", describe_message(&p.topic, &text));
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
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

/// One line a person can read for a message on an emonet topic.
pub fn describe_message(topic: &str, payload: &str) -> String {
    let leaf = topic.rsplit('/').next().unwrap_or(topic);
    let json: Option<serde_json::Value> = serde_json::from_str(payload).ok();
    match (leaf, json) {
        ("events", Some(v)) => {
            let prev = match &v["previous"] {
                serde_json::Value::Object(p) => format!(
                    " (was {} for {:.1}s)",
                    p.get("emotion").and_then(|e| e.as_str()).unwrap_or("?"),
                    p.get("duration_s").and_then(|d| d.as_f64()).unwrap_or(0.0)
                ),
                _ => String::new(),
            };
            format!(
                "{} #{} face {} {:<8} {:<9} {:>3.0}%{}",
                v["ts"].as_str().unwrap_or("?"),
                v["seq"],
                v["track_id"],
                v["type"].as_str().unwrap_or("?"),
                v["emotion"].as_str().unwrap_or("?"),
                v["confidence"].as_f64().unwrap_or(0.0) * 100.0,
                prev
            )
        }
        ("state", Some(v)) => {
            let faces: Vec<String> = v["faces"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|f| {
                            format!("{}={}", f["track_id"], f["emotion"].as_str().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} state: {} face(s) {}",
                topic,
                faces.len(),
                faces.join(" ")
            )
        }
        ("stats", Some(v)) => format!(
            "{} stats: camera {} frames {}/{} processed, {} dropped, {} corrupt",
            topic,
            v["camera"].as_str().unwrap_or("?"),
            v["frames"]["processed"],
            v["frames"]["captured"],
            v["frames"]["dropped"],
            v["frames"]["corrupt"]
        ),
        _ => format!("{topic} {payload}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_drops_oldest_and_counts() {
        let ob = Outbox::new(2);
        ob.push_event(b"1".to_vec());
        ob.push_event(b"2".to_vec());
        ob.push_event(b"3".to_vec());
        let c = ob.counts();
        assert_eq!((c.queued, c.dropped), (2, 1));
        assert_eq!(ob.pop_event().unwrap(), b"2");
        ob.requeue_front(vec![b"0".to_vec(), b"1".to_vec()]);
        // Capacity 2: requeued (older) events go first, the newest queued one is dropped.
        assert_eq!(ob.pop_event().unwrap(), b"0");
        assert_eq!(ob.pop_event().unwrap(), b"1");
        assert!(ob.pop_event().is_none());
        assert_eq!(ob.counts().dropped, 2);
    }

    #[test]
    fn state_slot_keeps_latest_only() {
        let ob = Outbox::new(4);
        ob.set_state(b"a".to_vec());
        ob.set_state(b"b".to_vec());
        assert_eq!(ob.take_state(false).unwrap(), b"b");
        assert!(ob.take_state(false).is_none());
        assert_eq!(ob.take_state(true).unwrap(), b"b");
    }

    #[test]
    fn homeassistant_discovery_reads_the_state_topic() {
        let t = Topics::new("emonet", "kiosk-1");
        let d = homeassistant_discovery("homeassistant", "kiosk-1", &t);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, "homeassistant/sensor/emonet_kiosk_1/emotion/config");
        let cfg: serde_json::Value = serde_json::from_slice(&d[0].1).unwrap();
        assert_eq!(cfg["state_topic"], "emonet/kiosk-1/state");
        assert_eq!(cfg["availability_topic"], "emonet/kiosk-1/availability");
        assert_eq!(cfg["unique_id"], "emonet_kiosk_1_emotion");
        assert!(cfg["value_template"]
            .as_str()
            .unwrap()
            .contains("faces[0].emotion"));
    }

    #[test]
    fn topics_and_readable_lines() {
        let t = Topics::new("emonet", "kiosk");
        assert_eq!(t.events, "emonet/kiosk/events");
        let line = describe_message(
            &t.events,
            r#"{"ts":"T","seq":3,"track_id":1,"type":"changed","emotion":"happy","confidence":0.9,"previous":{"emotion":"sad","duration_s":2.0}}"#,
        );
        assert!(
            line.contains("happy") && line.contains("90%") && line.contains("was sad"),
            "{line}"
        );
    }
}
