//! MQTT publishing through rumqttc: availability with last will, QoS 1 events, retained state,
//! periodic stats, optional Home Assistant discovery.
//!
//! rumqttc neither backs off between reconnects nor re-publishes anything after one, and with a
//! clean session it forgets unacknowledged publishes. So [`outbox`] keeps a bounded queue of
//! events, and [`publisher`] hands events to rumqttc only while connected, keeps each one until
//! its PUBACK, and puts unacknowledged ones back at the head of the queue when the connection
//! drops (QoS 1 is at-least-once: a duplicate after a reconnect is allowed, a loss is not).
//! [`discovery`] builds the Home Assistant sensor configs.

pub mod discovery;
pub mod outbox;
pub mod publisher;

use std::time::Duration;

use anyhow::Result;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use crate::config::MqttSettings;

pub use discovery::homeassistant_discovery;
pub use outbox::Outbox;
pub use publisher::run_publisher;

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

/// Connection options; with `[mqtt.tls]` enabled, TLS with the configured CA and client
/// certificate (the files were checked when the settings were loaded; read again here).
pub fn mqtt_options(cfg: &MqttSettings, device_id: &str, topics: &Topics) -> Result<MqttOptions> {
    let client_id = if cfg.client_id.is_empty() {
        format!("emonet-{device_id}")
    } else {
        cfg.client_id.clone()
    };
    let mut opts = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs));
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
    if cfg.tls.enabled {
        let tls = crate::tls::client_config(&cfg.tls)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_prefix_device_leaf() {
        let t = Topics::new("emonet", "kiosk");
        assert_eq!(t.events, "emonet/kiosk/events");
        assert_eq!(t.availability, "emonet/kiosk/availability");
    }
}
