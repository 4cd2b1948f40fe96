//! The live path's steady state allocates none of its per-frame buffers: frames driven through
//! the real preprocess stage (Lanczos resize + normalisation), the real depth stage (the
//! libtorch RT-MonoDepth-S engine at 320x96) and the real outputs sink (the colourised mp4
//! through GStreamer's x264 encoder), with a counting global allocator that records every Rust
//! heap allocation of at least [`LARGE`] bytes made on the test's thread. The network input,
//! the network-size image, the disparity, the depth map, the colour image and the video frame
//! are each image-sized, so any of them allocated per frame would be counted. Allocations
//! inside libtorch and GStreamer (C++ and GLib) do not go through Rust's allocator and are not
//! counted; neither are per-frame PNG files (`depth_png`), whose encoder allocates, nor the
//! telemetry thread's copies (Foxglove, MCAP, Zenoh), which happen off the live path.
#![cfg(feature = "torch")]

use livedepth::config::OutputsConfig;
use livedepth::engine::{LiveDepthEngine, Preprocessor, TorchDepthEngine, WeightSwapStats};
use livedepth::eval::EvalProtocol;
use livedepth::frame::{Frame, RgbImage};
use livedepth::model::Arch;
use livedepth::model::network::DepthNetwork;
use livedepth::pipeline::{Sink, Stage};
use livedepth::stages::{BufferPool, DepthStage, OutputSink, PreprocessStage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

/// The smallest allocation counted: a 64x16 RGB image. Every per-frame buffer at 320x96 is
/// larger (the network-size image alone is 92,160 bytes).
const LARGE: usize = 3072;

thread_local! {
    /// Whether this thread's allocations are being counted, and how many large ones so far.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LARGE_ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

struct CountingAllocator;

impl CountingAllocator {
    fn note(size: usize) {
        // `try_with`: the thread-locals may be gone while a thread exits.
        if size >= LARGE && COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = LARGE_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: the caller upholds `realloc`'s contract, passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract, passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A 640x192 camera frame with a moving pattern (so every frame's depth differs).
fn camera_frame(index: u64) -> Frame {
    let (w, h) = (640u32, 192u32);
    let mut rgb = RgbImage::new(w, h);
    for (i, pixel) in rgb.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = ((i as u32 % w) as u64, (i as u32 / w) as u64);
        pixel[0] = ((x * 3 + index * 5) % 256) as u8;
        pixel[1] = ((y * 4 + x / 8) % 256) as u8;
        pixel[2] = ((x ^ y) + index) as u8;
    }
    Frame::from_rgb(index, index as f64 / 30.0, rgb)
}

#[test]
fn the_live_path_reuses_every_per_frame_buffer() {
    let (width, height) = (320u32, 96u32);
    let arch = Arch::RtMonoDepthS;
    let network = DepthNetwork::new(arch, tch::Device::Cpu);
    let engine: LiveDepthEngine =
        Box::new(TorchDepthEngine::new(network, width, height, 1).expect("engine"));
    let (mean, std) = engine.input_normalisation();
    let preprocessor = Preprocessor::new(width, height, mean, std).expect("preprocessor");
    let pool = BufferPool::new(6, preprocessor.output_len());
    let mut preprocess = PreprocessStage::new(
        preprocessor,
        pool.clone(),
        #[cfg(feature = "cuda")]
        None,
    );
    let swaps = Arc::new(Mutex::new(WeightSwapStats::default()));
    let mut depth = DepthStage::new(engine, pool.clone(), None, swaps);
    let out = tempfile::tempdir().expect("tempdir");
    let outputs = OutputsConfig {
        dir: out.path().to_path_buf(),
        depth_png: false,
        video: true,
        metrics: false,
        ..OutputsConfig::default()
    };
    let protocol =
        EvalProtocol { min_depth: 0.1, max_depth: 80.0, garg_crop: false, median_scaling: true };
    let mut sink = OutputSink::new(outputs, 0.1, 80.0, 30.0, protocol, None).expect("sink");

    let (warm_up, counted) = (4u64, 24u64);
    // The frames exist before counting starts, as a source's would.
    let mut frames: Vec<Frame> = (0..warm_up + counted).map(camera_frame).collect();
    frames.reverse();
    let mut step = |frames: &mut Vec<Frame>| {
        let frame = frames.pop().expect("a frame");
        let prepared = preprocess.process(frame).expect("preprocess");
        let predicted = depth.process(prepared).expect("depth");
        sink.consume(predicted).expect("outputs");
    };
    for _ in 0..warm_up {
        step(&mut frames);
    }
    COUNTING.with(|c| c.set(true));
    for _ in 0..counted {
        step(&mut frames);
    }
    COUNTING.with(|c| c.set(false));
    let (allocations, largest) = (LARGE_ALLOCATIONS.with(Cell::get), LARGEST.with(Cell::get));
    assert_eq!(
        allocations, 0,
        "{allocations} allocations of >= {LARGE} bytes (largest {largest}) in {counted} \
         steady-state frames: a per-frame buffer is allocated instead of reused"
    );
    // The buffers went back to their pools: the input, image and disparity of the last frame.
    assert!(pool.inputs.idle() >= 1 && pool.images.idle() >= 1 && pool.disparities.idle() >= 1);

    // And the outputs are real: the mp4 was written and finished.
    sink.finish().expect("finish");
    let video = out.path().join("depth.mp4");
    let bytes = std::fs::metadata(&video).map(|m| m.len()).unwrap_or(0);
    assert!(bytes > 10_000, "{} holds {bytes} bytes", video.display());
}
