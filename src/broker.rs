//! An MQTT broker inside the daemon (rumqttd), so the demo and single-board setups work without
//! installing mosquitto. Off by default: a robot fleet normally has its own broker.
//!
//! rumqttd keeps, for every subscribed topic filter, a log of the messages that matched it
//! (`max_segment_size` × `max_segment_count`), so that a subscriber can read behind. With the
//! rumqttd example values (1 MiB × 4) one subscriber made the daemon grow by its event traffic
//! until 4 MiB per filter were held. Here a filter keeps at most [`SEGMENT_SIZE`] ×
//! [`SEGMENT_COUNT`] bytes: a subscriber more than that far behind misses the oldest messages.
//! It has no authentication and no TLS: listening beyond loopback is warned about.

/// Bytes per log segment of a subscribed filter (rumqttd's minimum is 1 KiB).
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// Segments kept per filter: at most 128 KiB of messages (a few hundred events) per filter.
pub const SEGMENT_COUNT: usize = 2;

use anyhow::{Context, Result};

/// Starts rumqttd listening on `listen` (e.g. `127.0.0.1:1883`) on background threads.
/// Returns once the port accepts connections, or fails if it never does.
pub fn start_embedded(listen: &str) -> Result<()> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("broker.listen {listen:?} is not an address:port"))?;
    // Fail here, with the address in the message, rather than inside rumqttd's thread.
    std::net::TcpListener::bind(addr).with_context(|| {
        format!("broker.listen {listen}: cannot listen (is another broker running?)")
    })?;
    let toml = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = {SEGMENT_SIZE}
max_segment_count = {SEGMENT_COUNT}

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 100
dynamic_filters = true
"#
    );
    if !addr.ip().is_loopback() {
        log::warn!(
            "embedded MQTT broker listens on {addr}, beyond loopback: it has no authentication \
             and no TLS, so anyone who can reach this port can read the events and publish on \
             this device's topics (use broker.listen = \"127.0.0.1:PORT\", or a real broker)"
        );
    }
    let config: rumqttd::Config =
        toml::from_str(&toml).context("internal error: embedded broker config")?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .context("cannot start the embedded broker thread")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            log::info!("embedded MQTT broker listening on {addr}");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("embedded MQTT broker did not come up on {addr}")
}
