//! Zenoh for fleets (`run --zenoh`): every channel of the live view is also put on a Zenoh
//! session, under `livedepth/<device>/<topic>`:
//! `livedepth/<device>/depth/image`, `…/depth/colour`, `…/depth/points`, `…/camera/image`,
//! `…/camera/calibration`, `…/tf` (with a pose network) and `…/livedepth/status`.
//!
//! Payloads are exactly the bytes the Foxglove live view and the MCAP recording carry: Foxglove's
//! well-known schemas in protobuf (the Zenoh encoding says `application/protobuf;foxglove.RawImage`
//! and so on), and the status in JSON. So a Foxglove, MCAP or protobuf consumer decodes them with
//! the schemas it already has; they are not ROS 2 CDR, so zenoh-bridge-ros2dds / rmw_zenoh users
//! decode them as protobuf rather than as sensor_msgs.
//!
//! This is a sink of the telemetry thread's Foxglove context ([`ZenohSink`] implements
//! `foxglove::Sink`), so the live path never waits for it: it runs on the telemetry thread, and
//! its publishers drop messages rather than block when the network is congested.

use foxglove::{ChannelId, FoxgloveError, RawChannel, Sink, SinkId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use zenoh::Wait;
use zenoh::bytes::Encoding;
use zenoh::qos::CongestionControl;

/// How the session is opened (`[outputs.zenoh]` in a config, or the `run --zenoh*` flags).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenohConfig {
    /// `peer` (talks to other peers directly) or `client` (through a router).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Endpoints to listen on, e.g. `tcp/0.0.0.0:7447` (`--zenoh-listen`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Endpoints to connect to, e.g. `tcp/192.168.1.10:7447` (`--zenoh-connect`).
    #[serde(default)]
    pub connect: Vec<String>,
    /// This device's name in the keys (`--device-name`); default: the host name.
    #[serde(default = "default_device")]
    pub device: String,
    /// The fleet whose adapted weights this device shares with `--adapt` (`--fleet`), under
    /// `livedepth/<fleet>/weights/<device>`.
    #[serde(default = "default_fleet")]
    pub fleet: String,
    /// Install the fleet's merged weights (`--zenoh-pull-weights`): with `--adapt` the adapter
    /// continues from each merge; without, the live engine serves it.
    #[serde(default)]
    pub pull_weights: bool,
}

fn default_fleet() -> String {
    "default".to_owned()
}

fn default_mode() -> String {
    "peer".to_owned()
}

/// The host name, else `livedepth`.
fn default_device() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| check_device_name(h).is_ok())
        .unwrap_or_else(|| "livedepth".to_owned())
}

impl Default for ZenohConfig {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            listen: Vec::new(),
            connect: Vec::new(),
            device: default_device(),
            fleet: default_fleet(),
            pull_weights: false,
        }
    }
}

/// What a device name must be.
pub const DEVICE_NAME_EXPECTED: &str =
    "one key chunk, without `/`, `*`, `$`, `?`, `#` or spaces (e.g. car-1)";

/// A device name is one key-expression chunk: not empty, no `/`, no wildcard or reserved
/// characters (`*`, `$`, `?`, `#`), no spaces.
pub fn check_device_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().any(|c| matches!(c, '/' | '*' | '$' | '?' | '#') || c.is_whitespace())
    {
        return Err(DEVICE_NAME_EXPECTED.to_owned());
    }
    Ok(())
}

/// A key an input is read from (`--speed-key`, `--gyro zenoh:KEY`): a valid Zenoh key
/// expression naming one key (no wildcards). The error says what was expected.
pub fn check_input_key(key: &str) -> Result<(), String> {
    let expected = "one Zenoh key, e.g. vehicle/car-1/speed (no wildcards `*`, `$*`)";
    match zenoh::key_expr::KeyExpr::try_from(key) {
        Ok(k) if !k.is_wild() => Ok(()),
        Ok(_) => Err(format!("`{key}` has a wildcard: expected {expected}")),
        Err(e) => Err(format!("`{key}` is not a key expression ({e}): expected {expected}")),
    }
}

/// A failed check: the field (with its flag), what was expected, what was found.
pub type ConfigProblem = (&'static str, String, String);

impl ZenohConfig {
    /// Checks the fields; errors name the field (and its flag) and what was expected.
    pub fn check(&self) -> Result<(), ConfigProblem> {
        if !matches!(self.mode.as_str(), "peer" | "client") {
            return Err((
                "outputs.zenoh.mode",
                "peer or client".into(),
                format!("{:?}", self.mode),
            ));
        }
        if let Err(expected) = check_device_name(&self.device) {
            return Err((
                "outputs.zenoh.device (--device-name)",
                expected,
                format!("{:?}", self.device),
            ));
        }
        if let Err(expected) = check_device_name(&self.fleet) {
            return Err(("outputs.zenoh.fleet (--fleet)", expected, format!("{:?}", self.fleet)));
        }
        for (field, endpoints) in [
            ("outputs.zenoh.listen (--zenoh-listen)", &self.listen),
            ("outputs.zenoh.connect (--zenoh-connect)", &self.connect),
        ] {
            for endpoint in endpoints {
                let ok = endpoint
                    .split_once('/')
                    .is_some_and(|(proto, address)| proto == "tcp" && address.contains(':'));
                if !ok {
                    let expected = "tcp/HOST:PORT (e.g. tcp/0.0.0.0:7447)".to_owned();
                    return Err((field, expected, format!("{endpoint:?}")));
                }
            }
        }
        if self.mode == "client" && self.connect.is_empty() {
            return Err((
                "outputs.zenoh.connect (--zenoh-connect)",
                "a router endpoint in client mode".to_owned(),
                "none".to_owned(),
            ));
        }
        Ok(())
    }

    /// `livedepth/<device>`.
    pub fn key_prefix(&self) -> String {
        format!("livedepth/{}", self.device)
    }

    /// Opens the session. Multicast scouting finds peers on the LAN when no endpoint is given;
    /// with endpoints, only those are used.
    pub fn open(&self) -> Result<zenoh::Session, String> {
        let mut config = zenoh::Config::default();
        let set = |config: &mut zenoh::Config, key: &str, value: String| {
            config.insert_json5(key, &value).map_err(|e| format!("zenoh config {key}: {e}"))
        };
        set(&mut config, "mode", format!("{:?}", self.mode))?;
        let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        set(&mut config, "listen/endpoints", list(&self.listen))?;
        set(&mut config, "connect/endpoints", list(&self.connect))?;
        let scouting = self.listen.is_empty() && self.connect.is_empty();
        set(&mut config, "scouting/multicast/enabled", scouting.to_string())?;
        zenoh::open(config).wait().map_err(|e| format!("cannot open a zenoh session: {e}"))
    }
}

/// Puts every message of the telemetry's Foxglove channels on Zenoh (see the module docs).
pub struct ZenohSink {
    id: SinkId,
    session: zenoh::Session,
    prefix: String,
    publishers: Mutex<HashMap<ChannelId, zenoh::pubsub::Publisher<'static>>>,
}

impl ZenohSink {
    pub fn new(session: zenoh::Session, prefix: String) -> Self {
        Self { id: SinkId::next(), session, prefix, publishers: Mutex::new(HashMap::new()) }
    }

    /// The channel's key and encoding: `<prefix>/<topic without its leading slash>`.
    fn publisher_for(
        &self,
        channel: &RawChannel,
    ) -> Result<zenoh::pubsub::Publisher<'static>, FoxgloveError> {
        let key = format!("{}/{}", self.prefix, channel.topic().trim_start_matches('/'));
        let encoding = match (channel.message_encoding(), channel.schema()) {
            ("protobuf", Some(schema)) => {
                Encoding::APPLICATION_PROTOBUF.with_schema(schema.name.clone())
            }
            ("json", _) => Encoding::APPLICATION_JSON,
            (other, _) => Encoding::APPLICATION_OCTET_STREAM.with_schema(other.to_owned()),
        };
        self.session
            .declare_publisher(key.clone())
            .encoding(encoding)
            .congestion_control(CongestionControl::Drop)
            .wait()
            .map_err(|e| FoxgloveError::ValueError(format!("zenoh publisher {key}: {e}")))
    }
}

impl Sink for ZenohSink {
    fn id(&self) -> SinkId {
        self.id
    }

    fn log(
        &self,
        channel: &RawChannel,
        msg: &[u8],
        _metadata: &foxglove::Metadata,
    ) -> Result<(), FoxgloveError> {
        let mut publishers = self.publishers.lock().unwrap_or_else(|p| p.into_inner());
        let publisher = match publishers.entry(channel.id()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(self.publisher_for(channel)?)
            }
        };
        publisher
            .put(msg.to_vec())
            .wait()
            .map_err(|e| FoxgloveError::ValueError(format!("zenoh put: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_keys_with_wildcards_or_bad_syntax_are_refused() {
        assert!(check_input_key("vehicle/car-1/speed").is_ok());
        assert!(check_input_key("vehicle/*/speed").unwrap_err().contains("wildcard"));
        assert!(check_input_key("vehicle//speed").unwrap_err().contains("not a key expression"));
    }

    #[test]
    fn fields_are_checked_and_errors_name_them() {
        let ok = ZenohConfig {
            listen: vec!["tcp/0.0.0.0:7447".into()],
            device: "car-1".into(),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        assert_eq!(ok.key_prefix(), "livedepth/car-1");
        let bad_device = ZenohConfig { device: "car/1".into(), ..ok.clone() };
        let (field, expected, found) = bad_device.check().unwrap_err();
        assert!(field.contains("--device-name") && found.contains("car/1"), "{field}: {found}");
        assert!(expected.contains("key chunk"));
        let bad_endpoint = ZenohConfig { connect: vec!["192.168.1.2".into()], ..ok.clone() };
        let (field, expected, found) = bad_endpoint.check().unwrap_err();
        assert!(field.contains("--zenoh-connect") && expected.contains("tcp/HOST:PORT"));
        assert!(found.contains("192.168.1.2"));
        let client = ZenohConfig { mode: "client".into(), ..ok.clone() };
        assert!(client.check().unwrap_err().0.contains("connect"));
        let mode = ZenohConfig { mode: "router".into(), ..ok };
        assert!(mode.check().unwrap_err().1.contains("peer or client"));
    }
}
