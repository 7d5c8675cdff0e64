//! The publisher task: connects (with backoff), writes the retained topics on every new
//! session, moves events from the [`Outbox`] to rumqttc while connected, keeps them until their
//! PUBACK ([`Inflight`]), and on shutdown flushes, says `offline` and disconnects.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};

use super::{homeassistant_discovery, mqtt_options, Outbox, Topics, OFFLINE, ONLINE};
use crate::config::MqttSettings;
use crate::ratelimit::ConnectionLog;
use crate::shutdown::Shutdown;

/// How many publishes may be in rumqttc's hands at once; the rest wait in the [`Outbox`].
const MAX_HANDED: usize = 32;

/// A publish handed to rumqttc, kept until it is on the wire.
struct Handed {
    /// The payload of an event (requeued if the connection drops before its PUBACK).
    event: Option<Vec<u8>>,
    qos: QoS,
}

/// The publishes rumqttc holds: handed over (not yet on the wire), then, for QoS 1, awaiting
/// their PUBACK. Shared by the run loop and the shutdown flush.
#[derive(Default)]
pub struct Inflight {
    handed: VecDeque<Handed>,
    awaiting: VecDeque<(u16, Option<Vec<u8>>)>,
}

impl Inflight {
    /// Hands one publish to rumqttc; false when its request queue is full.
    fn publish(
        &mut self,
        client: &AsyncClient,
        topic: &str,
        (qos, retain): (QoS, bool),
        payload: Vec<u8>,
        event: bool,
    ) -> bool {
        let keep = event.then(|| payload.clone());
        let ok = client.try_publish(topic, qos, retain, payload).is_ok();
        if ok {
            self.handed.push_back(Handed { event: keep, qos });
        }
        ok
    }

    /// Follows rumqttc's progress: a publish on the wire, a PUBACK.
    fn observe(&mut self, event: &Event, outbox: &Outbox) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(h) = self.handed.pop_front() {
                    if h.qos == QoS::AtMostOnce {
                        outbox.published.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.awaiting.push_back((*pkid, h.event));
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(i) = self.awaiting.iter().position(|(p, _)| *p == ack.pkid) {
                    self.awaiting.remove(i);
                }
                outbox.published.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn len(&self) -> usize {
        self.handed.len() + self.awaiting.len()
    }

    /// The events not acknowledged, oldest first; forgets everything in flight.
    fn take_unacked(&mut self) -> Vec<Vec<u8>> {
        self.awaiting
            .drain(..)
            .filter_map(|(_, ev)| ev)
            .chain(self.handed.drain(..).filter_map(|h| h.event))
            .collect()
    }
}

const RETAINED: (QoS, bool) = (QoS::AtLeastOnce, true);
const EVENT: (QoS, bool) = (QoS::AtLeastOnce, false);
const STATS: (QoS, bool) = (QoS::AtMostOnce, false);

/// One connection's worth of publisher state.
struct Session {
    cfg: MqttSettings,
    topics: Topics,
    outbox: Arc<Outbox>,
    client: AsyncClient,
    inflight: Inflight,
    connected: bool,
    ever_connected: bool,
    ha_status: String,
    discovery: Vec<(String, Vec<u8>)>,
    /// Connection state changes for the journal, a persisting failure repeated once a minute.
    connlog: ConnectionLog,
}

/// Runs until `shutdown` is triggered; then flushes what it can (bounded by a timeout),
/// publishes `offline` and disconnects.
pub async fn run_publisher(
    cfg: MqttSettings,
    topics: Topics,
    device_id: String,
    outbox: Arc<Outbox>,
    shutdown: Shutdown,
) -> Result<()> {
    let opts = mqtt_options(&cfg, &device_id, &topics)?;
    let (client, mut eventloop) = AsyncClient::new(opts, MAX_HANDED * 2 + 8);
    let initial = Duration::from_millis(cfg.reconnect_initial_ms.max(10));
    let max_backoff = Duration::from_millis(cfg.reconnect_max_ms.max(cfg.reconnect_initial_ms));
    let mut backoff = initial;
    let discovery = if cfg.homeassistant {
        homeassistant_discovery(&cfg.discovery_prefix, &device_id, &topics)
    } else {
        Vec::new()
    };
    let mut s = Session {
        ha_status: format!("{}/status", cfg.discovery_prefix),
        cfg,
        topics,
        outbox,
        client,
        inflight: Inflight::default(),
        connected: false,
        ever_connected: false,
        discovery,
        connlog: ConnectionLog::new(Duration::from_secs(60)),
    };
    while !shutdown.is_triggered() {
        if s.connected {
            s.hand_over();
        }
        tokio::select! {
            _ = shutdown.triggered() => {}
            _ = s.outbox.wake.notified(), if s.connected => {}
            polled = eventloop.poll() => match polled {
                Ok(event) => {
                    if s.on_event(&event) {
                        backoff = initial;
                    }
                }
                Err(e) => {
                    s.on_connection_lost(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.triggered() => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }
    if s.connected {
        finish(
            &s.client,
            &mut eventloop,
            &s.topics,
            &s.outbox,
            &mut s.inflight,
        )
        .await;
    } else {
        log::warn!(
            "stopping while disconnected from the broker: {} events not delivered",
            s.outbox.counts().queued
        );
    }
    Ok(())
}

impl Session {
    /// Moves the newest state and stats, then events up to [`MAX_HANDED`], to rumqttc.
    fn hand_over(&mut self) {
        let (client, topics, outbox) = (&self.client, &self.topics, &self.outbox);
        if let Some(state) = outbox.take_state(false) {
            self.inflight
                .publish(client, &topics.state, RETAINED, state, false);
        }
        if let Some(stats) = outbox.take_stats() {
            self.inflight
                .publish(client, &topics.stats, STATS, stats, false);
        }
        while self.inflight.len() < MAX_HANDED {
            let Some(ev) = outbox.pop_event() else { break };
            if !self
                .inflight
                .publish(client, &topics.events, EVENT, ev.clone(), true)
            {
                outbox.requeue_front(vec![ev]);
                break;
            }
        }
    }

    /// Handles one event of the connection; true on a new connection.
    fn on_event(&mut self, event: &Event) -> bool {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                self.on_connected();
                return true;
            }
            Event::Incoming(Packet::Publish(p))
                if p.topic == self.ha_status && &p.payload[..] == b"online" =>
            {
                // Home Assistant restarted and lost its non-retained view: announce again.
                self.announce();
            }
            _ => self.inflight.observe(event, &self.outbox),
        }
        false
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.outbox.connected.store(true, Ordering::Relaxed);
        if self.ever_connected {
            self.outbox.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.ever_connected = true;
        let tls = if self.cfg.tls.enabled {
            " over TLS"
        } else {
            ""
        };
        let line = format!(
            "MQTT: connected to {}:{}{tls}",
            self.cfg.host, self.cfg.port
        );
        self.connlog.connected(&line, Instant::now());
        // A new clean session: whatever rumqttc still held is gone, so the retained topics are
        // written again before anything else.
        let (client, topics) = (&self.client, &self.topics);
        self.inflight
            .publish(client, &topics.availability, RETAINED, ONLINE.into(), false);
        if let Some(state) = self.outbox.take_state(true) {
            self.inflight
                .publish(client, &topics.state, RETAINED, state, false);
        }
        if self.cfg.homeassistant {
            let _ = client.try_subscribe(self.ha_status.as_str(), QoS::AtLeastOnce);
            self.announce();
        }
    }

    fn announce(&mut self) {
        for (topic, payload) in &self.discovery {
            self.inflight
                .publish(&self.client, topic, RETAINED, payload.clone(), false);
        }
    }

    fn on_connection_lost(&mut self, e: &rumqttc::ConnectionError) {
        let (host, port) = (&self.cfg.host, self.cfg.port);
        let line = if self.connected {
            format!("MQTT: connection to {host}:{port} lost: {e}; reconnecting")
        } else {
            format!(
                "MQTT: cannot connect to {host}:{port}: {}",
                describe(e, &self.cfg)
            )
        };
        self.connlog.failed(&line, Instant::now());
        self.connected = false;
        self.outbox.connected.store(false, Ordering::Relaxed);
        self.outbox.requeue_front(self.inflight.take_unacked());
    }
}

/// Why a connection attempt failed, with the setting to look at where that is clear.
fn describe(e: &rumqttc::ConnectionError, cfg: &MqttSettings) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            let hint = match code {
                Code::BadUserNamePassword | Code::NotAuthorized => {
                    " (check mqtt.username and mqtt.password)"
                }
                Code::BadClientId => " (check mqtt.client_id)",
                Code::RefusedProtocolVersion => " (the broker does not speak MQTT 3.1.1)",
                _ => "",
            };
            format!("the broker refused the connection: {code:?}{hint}")
        }
        rumqttc::ConnectionError::Tls(t) => format!("{e}{}", crate::tls::hint(&t.to_string())),
        _ if !cfg.tls.enabled && cfg.port == 8883 => {
            format!("{e} (port 8883 is MQTT over TLS: set [mqtt.tls] enabled = true)")
        }
        _ => e.to_string(),
    }
}

/// Clean shutdown: deliver the queued events and the final state, then `offline`, then
/// DISCONNECT (which also tells the broker not to send the last will). Bounded in time so a
/// stuck broker cannot block the service stop.
async fn finish(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topics: &Topics,
    outbox: &Outbox,
    inflight: &mut Inflight,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut offline_sent = false;
    let mut disconnect_sent = false;
    loop {
        if !offline_sent {
            while let Some(ev) = outbox.pop_event() {
                if !inflight.publish(client, &topics.events, EVENT, ev.clone(), true) {
                    outbox.requeue_front(vec![ev]);
                    break;
                }
            }
            if let Some(state) = outbox.take_state(false) {
                inflight.publish(client, &topics.state, RETAINED, state, false);
            }
            offline_sent = outbox.is_idle()
                && inflight.publish(
                    client,
                    &topics.availability,
                    RETAINED,
                    OFFLINE.into(),
                    false,
                );
        }
        // Disconnect once everything, `offline` included, is acknowledged.
        if offline_sent && !disconnect_sent && inflight.len() == 0 {
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
            Ok(Ok(event)) => inflight.observe(&event, outbox),
        }
    }
}
