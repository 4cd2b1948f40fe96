//! The camera's orientation from an IMU topic of the bag being replayed (`run --adapt --source
//! mcap://FILE --gyro mcap:TOPIC`): a ROS 2 `sensor_msgs/msg/Imu` whose `orientation` is an
//! attitude estimate (an IMU with a filter on board, or an `imu_filter_madgwick`-style node), the
//! IMU body's orientation in a world frame.
//!
//! The track is read whole before the run starts (an IMU at 200 Hz for ten minutes is 120 000
//! samples of 40 bytes), put on the frames' clock and handed to the run as a recorded track
//! ([`super::gyro::Orientations`]): the bag source stamps its frames in seconds from the first
//! image of its topic, so the IMU's header stamps are counted from that same image.
//!
//! The camera's axes (x right, y down, z forward) are not the IMU's. `mcap:TOPIC` assumes the
//! usual mount: a camera looking along the IMU's x axis, with the IMU in ROS's body convention
//! (REP 103: x forward, y left, z up). Any other mount is given as the camera's orientation in
//! the IMU's frame: `mcap:TOPIC?camera_in_imu=qw,qx,qy,qz` (what a URDF's joint from the IMU
//! link to the camera's optical frame says).

use super::gyro::Orientations;
use crate::source::SourceError;
use crate::source::bag::decode::CdrReader;
use crate::source::bag::{BagSource, SCHEME, parse_uri};
use nalgebra::{Matrix3, Rotation3, UnitQuaternion};
use std::fs::File;
use std::io::BufReader;

/// The schema an IMU topic must have (in the `cdr` encoding).
const IMU_SCHEMA: &str = "sensor_msgs/msg/Imu";

/// What `--gyro mcap:…` names: the IMU topic and how the camera sits on the IMU.
#[derive(Clone, Debug, PartialEq)]
pub struct ImuTopic {
    pub topic: String,
    /// The camera's orientation in the IMU's frame (camera-to-IMU rotation).
    pub camera_in_imu: UnitQuaternion<f64>,
}

/// A camera looking along the IMU's x axis (REP 103 body axes → optical axes): the camera's
/// x (right) is the IMU's −y, its y (down) the IMU's −z, its z (forward) the IMU's x.
pub fn forward_camera_in_imu() -> UnitQuaternion<f64> {
    let columns = Matrix3::new(0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0);
    UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(columns))
}

impl ImuTopic {
    /// Parses the part after `mcap:`: `TOPIC[?camera_in_imu=qw,qx,qy,qz]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (topic, query) = match spec.split_once('?') {
            Some((t, q)) => (t, Some(q)),
            None => (spec, None),
        };
        if !topic.starts_with('/') || topic.len() < 2 {
            return Err(format!(
                "`{topic}`: expected an IMU topic of the replayed bag, e.g. mcap:/imu/data"
            ));
        }
        let mut camera_in_imu = forward_camera_in_imu();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let Some(("camera_in_imu", value)) = pair.split_once('=') else {
                return Err(format!(
                    "unknown option `{pair}` (expected camera_in_imu=qw,qx,qy,qz)"
                ));
            };
            let parts: Vec<f64> =
                value.split(',').filter_map(|v| v.trim().parse::<f64>().ok()).collect();
            let [w, x, y, z] = parts[..] else {
                return Err(format!("camera_in_imu=`{value}`: expected four numbers qw,qx,qy,qz"));
            };
            camera_in_imu = super::gyro::sample_from([0.0, w, x, y, z])
                .map_err(|e| format!("camera_in_imu=`{value}`: {e}"))?
                .1;
        }
        Ok(Self { topic: topic.to_owned(), camera_in_imu })
    }
}

/// One `sensor_msgs/msg/Imu` message (CDR): its stamp and the IMU's orientation.
pub fn imu_orientation(data: &[u8]) -> Result<(f64, UnitQuaternion<f64>), String> {
    let mut cdr = CdrReader::new(data)?;
    let stamp = cdr.header()?;
    let x = cdr.f64("orientation.x")?;
    let y = cdr.f64("orientation.y")?;
    let z = cdr.f64("orientation.z")?;
    let w = cdr.f64("orientation.w")?;
    let covariance = cdr.f64("orientation_covariance[0]")?;
    if covariance == -1.0 {
        return Err("orientation_covariance[0] is -1: this IMU publishes no orientation; give \
                    the topic of an attitude estimate (a filter's output, e.g. /imu/data from \
                    imu_filter_madgwick)"
            .into());
    }
    let (_, q) = super::gyro::sample_from([stamp, w, x, y, z])
        .map_err(|e| format!("orientation (x,y,z,w) = ({x}, {y}, {z}, {w}): {e}"))?;
    Ok((stamp, q))
}

/// The camera's orientations from `imu`'s topic in the bag `source_uri` replays
/// (`mcap://FILE[?topic=…]`), on the frames' clock.
pub fn read_track(source_uri: &str, imu: &ImuTopic) -> crate::Result<Orientations> {
    let flag = format!("--gyro mcap:{}", imu.topic);
    let refuse = |reason: String| crate::Error::Other(format!("{flag}: {reason}"));
    if !source_uri.starts_with(SCHEME) {
        return Err(refuse(format!(
            "reads an IMU topic of the bag being replayed, but the source is `{source_uri}`: \
             replay the bag with --source mcap://FILE, or give a track with --gyro FILE \
             (time,qw,qx,qy,qz)"
        )));
    }
    // The frames' clock starts at the first image of the replayed topic.
    let mut images = BagSource::open(source_uri)?;
    crate::source::Source::next_frame(&mut images)?;
    let origin = images
        .first_stamp()
        .ok_or_else(|| refuse(format!("{source_uri} has no image to start the frames' clock")))?;
    let path = parse_uri(source_uri)?.path;
    let file = File::open(&path).map_err(|e| crate::Error::io(&path, e))?;
    let reader = mcap::io::MessageReader::new(BufReader::with_capacity(1 << 20, file));
    let mut samples: Vec<(f64, UnitQuaternion<f64>)> = Vec::new();
    let mut imu_topics = std::collections::BTreeSet::new();
    for message in reader {
        let message = message.map_err(|e| {
            crate::Error::from(SourceError::Truncated {
                uri: source_uri.to_owned(),
                reason: format!("{}: corrupt or cut-off MCAP data: {e}", path.display()),
            })
        })?;
        let channel = &message.channel;
        let schema = channel.schema.as_ref().map_or("", |s| s.name.as_str());
        if schema == IMU_SCHEMA {
            imu_topics.insert(channel.topic.clone());
        }
        if channel.topic != imu.topic {
            continue;
        }
        if schema != IMU_SCHEMA || channel.message_encoding != "cdr" {
            return Err(refuse(format!(
                "the topic carries `{schema}` ({}), expected {IMU_SCHEMA} (cdr)",
                channel.message_encoding
            )));
        }
        let n = samples.len();
        let at = |reason: String| {
            refuse(format!("{}, message {n} of the topic: {reason}", path.display()))
        };
        let (stamp, imu_in_world) = imu_orientation(&message.data).map_err(at)?;
        let stamp = if stamp > 0.0 { stamp } else { message.log_time as f64 * 1e-9 };
        let time = stamp - origin;
        if let Some(&(last, _)) = samples.last()
            && time <= last
        {
            return Err(at(format!(
                "stamp {stamp} s is not after the previous one ({} s): expected increasing stamps",
                last + origin
            )));
        }
        samples.push((time, imu_in_world * imu.camera_in_imu));
    }
    if samples.is_empty() {
        let listing = if imu_topics.is_empty() {
            "none".to_owned()
        } else {
            imu_topics.into_iter().collect::<Vec<_>>().join(", ")
        };
        return Err(refuse(format!(
            "{} has no message on this topic; {IMU_SCHEMA} topics in the file: {listing}",
            path.display()
        )));
    }
    // Messages about frames outside the track name the flag's topic and the file.
    let named = std::path::PathBuf::from(format!("mcap:{} in {}", imu.topic, path.display()));
    Ok(Orientations::Track { path: named, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector3;

    #[test]
    fn the_forward_mount_maps_the_cameras_axes_onto_the_imus() {
        let q = forward_camera_in_imu();
        // Camera forward (z) is IMU forward (x); camera right (x) is IMU −y (left); camera
        // down (y) is IMU −z (up).
        assert!((q * Vector3::z() - Vector3::x()).norm() < 1e-12);
        assert!((q * Vector3::x() + Vector3::y()).norm() < 1e-12);
        assert!((q * Vector3::y() + Vector3::z()).norm() < 1e-12);
    }

    #[test]
    fn a_cut_off_imu_message_names_the_field_it_lacks() {
        let err = imu_orientation(&[0, 1, 0, 0, 1, 0, 0, 0]).unwrap_err();
        assert!(err.contains("header.stamp.nanosec"), "{err}");
        assert!(imu_orientation(&[0, 9, 0, 0]).unwrap_err().contains("encapsulation"));
    }

    #[test]
    fn imu_topics_parse_with_an_optional_mount_and_bad_ones_are_named() {
        let plain = ImuTopic::parse("/imu/data").unwrap();
        assert_eq!(plain.topic, "/imu/data");
        assert_eq!(plain.camera_in_imu, forward_camera_in_imu());
        let turned = ImuTopic::parse("/imu/data?camera_in_imu=0,0,0,1").unwrap();
        assert!((turned.camera_in_imu.angle() - std::f64::consts::PI).abs() < 1e-12);
        for (bad, says) in [
            ("imu", "expected an IMU topic"),
            ("/imu?mount=1", "unknown option `mount=1`"),
            ("/imu?camera_in_imu=1,0,0", "four numbers"),
            ("/imu?camera_in_imu=2,0,0,0", "length 2.0000"),
        ] {
            let err = ImuTopic::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
