//! Benchmark: what the staged pipeline costs and gains. The same three-step work on 640x192
//! frames (brightness sum, a box blur, a checksum) runs (a) as a plain sequential loop and (b) as
//! three pipeline stages on their own threads with bounded lossless queues, in the same run; it
//! prints frames per second of both and their ratio (above 1 when the threads overlap the steps
//! on more than one core; the per-frame overhead of the channels otherwise).
//!
//! Run: `cargo bench --bench pipeline`.

use livedepth::frame::{Frame, RgbImage};
use livedepth::pipeline::{Pipeline, PipelineOptions, QueuePolicy, StageError};
use livedepth::source::{Source, SourceError};
use std::time::Instant;

const FRAMES: u64 = 300;
const WIDTH: u32 = 640;
const HEIGHT: u32 = 192;

/// Frames with a moving gradient, made on the fly.
struct Gradient {
    next: u64,
}

impl Source for Gradient {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next == FRAMES {
            return Ok(None);
        }
        let mut rgb = RgbImage::new(WIDTH, HEIGHT);
        for (i, v) in rgb.data.iter_mut().enumerate() {
            *v = ((i as u64 + self.next * 7) % 251) as u8;
        }
        self.next += 1;
        Ok(Some(Frame::from_rgb(self.next - 1, self.next as f64 / 30.0, rgb)))
    }
    fn len_hint(&self) -> Option<usize> {
        Some(FRAMES as usize)
    }
    fn is_live(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        "gradient frames".into()
    }
}

fn brightness(frame: &Frame) -> u64 {
    frame.rgb.data.iter().map(|&v| v as u64).sum()
}

fn blur(frame: &Frame) -> Vec<u8> {
    let w = WIDTH as usize * 3;
    let d = &frame.rgb.data;
    let mut out = vec![0u8; d.len()];
    for i in w..d.len() - w {
        out[i] = ((d[i - w] as u16 + d[i] as u16 * 2 + d[i + w] as u16) / 4) as u8;
    }
    out
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |h, &v| h.wrapping_mul(31).wrapping_add(v as u64))
}

fn main() {
    // (a) the plain loop
    let started = Instant::now();
    let mut source = Gradient { next: 0 };
    let mut sequential_total = 0u64;
    while let Ok(Some(frame)) = source.next_frame() {
        let b = brightness(&frame);
        let blurred = blur(&frame);
        sequential_total = sequential_total.wrapping_add(b ^ checksum(&blurred));
    }
    let sequential_fps = FRAMES as f64 / started.elapsed().as_secs_f64();

    // (b) the pipeline
    let started = Instant::now();
    let mut pipeline_total = 0u64;
    let options = PipelineOptions { policy: QueuePolicy::Lossless, ..PipelineOptions::quiet() };
    let (tx, rx) = std::sync::mpsc::channel();
    Pipeline::new(Box::new(Gradient { next: 0 }), options)
        .expect("pipeline options")
        .stage("brightness", |f: Frame| Ok::<_, StageError>((brightness(&f), f)))
        .stage("blur", |(b, f): (u64, Frame)| Ok::<_, StageError>((b, blur(&f))))
        .sink("checksum", move |(b, blurred): (u64, Vec<u8>)| {
            tx.send(b ^ checksum(&blurred)).map_err(|e| StageError::from(e.to_string()))
        })
        .run()
        .expect("pipeline run");
    for v in rx.try_iter() {
        pipeline_total = pipeline_total.wrapping_add(v);
    }
    let pipeline_fps = FRAMES as f64 / started.elapsed().as_secs_f64();

    assert_eq!(sequential_total, pipeline_total, "both runs did the same work");
    println!("{FRAMES} frames of {WIDTH}x{HEIGHT}, 3 steps");
    println!("  sequential loop : {sequential_fps:8.1} fps");
    println!("  staged pipeline : {pipeline_fps:8.1} fps");
    println!("  ratio pipeline / sequential: {:.2}x", pipeline_fps / sequential_fps);
}
