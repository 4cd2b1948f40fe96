//! The jobs behind the command-line verbs that need a depth network: live depth (`run`),
//! evaluation on recorded data (`eval`) and the end-to-end demo (`demo`), plus the paced replay
//! of a video file as a camera (`replay`). The CLI only parses arguments and calls these.

pub mod adapt;
pub mod adapt_diagnostics;
mod adapt_scale;
pub mod adapt_share;
pub mod demo;
pub mod eval;
pub mod fleet;
pub mod fleet_merges;
pub mod gyro;
pub mod gyro_bag;
pub mod gyro_live;
pub mod live;
pub mod priority;
pub mod replay;
