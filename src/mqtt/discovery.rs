//! Home Assistant MQTT discovery: retained sensor configs that read the device's `state` topic.

use super::Topics;

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
            crate::event::encode("discovery", &cfg).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Topics;

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
}
