//! The node bodies of a running pipeline: the source thread (reads until the end, a stop or an
//! error, and hands every frame downstream), each stage's thread and the sink's, each timing
//! its items and turning an error or a panic into the run's first failure.

use super::{
    Item, NodeShared, PipelineError, QueueReceiver, QueueSender, RunContext, Sink, Stage,
    StageError, lock,
};
use crate::frame::Frame;
use crate::source::Source;
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

pub(super) fn run_source(
    ctx: &RunContext,
    node: &NodeShared,
    mut source: Box<dyn Source>,
    description: &str,
    output: &QueueSender<Frame>,
) {
    let mut frames_read = 0u64;
    while !ctx.aborting() && !ctx.stop_requested() {
        let started = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| source.next_frame()));
        let finished = Instant::now();
        ctx.source_reconnects.store(source.reconnects(), Ordering::Relaxed);
        match result {
            Ok(Ok(Some(frame))) => {
                lock(&node.stats).record(started, finished);
                frames_read += 1;
                let item = Item { index: frame.index, captured: finished, value: frame };
                if output.push(item, &ctx.abort).is_err() {
                    return;
                }
            }
            Ok(Ok(None)) => {
                ctx.source_ended.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Err(error)) => {
                let description = description.to_string();
                ctx.record_error(PipelineError::Source {
                    description,
                    frames_read,
                    error: Box::new(error),
                });
                return;
            }
            Err(payload) => {
                let description = description.to_string();
                let message = panic_message(&*payload);
                ctx.record_error(PipelineError::SourcePanic { description, frames_read, message });
                return;
            }
        }
    }
}

pub(super) fn run_stage<In, S: Stage<In>>(
    ctx: &RunContext,
    node: &NodeShared,
    mut stage: S,
    input: &QueueReceiver<In>,
    output: &QueueSender<S::Out>,
) {
    while let Some(Item { index, captured, value }) = input.pop(&ctx.abort) {
        let started = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| stage.process(value)));
        let finished = Instant::now();
        match result {
            Ok(Ok(out)) => {
                lock(&node.stats).record(started, finished);
                if output.push(Item { index, captured, value: out }, &ctx.abort).is_err() {
                    return;
                }
            }
            Ok(Err(error)) => return item_failed(ctx, node, index, Ok(error)),
            Err(payload) => return item_failed(ctx, node, index, Err(payload)),
        }
    }
}

/// Makes a stage's or the sink's failure on item `index` the run's: the error it returned, or
/// the panic it raised.
fn item_failed(
    ctx: &RunContext,
    node: &NodeShared,
    index: u64,
    failure: Result<StageError, Box<dyn Any + Send>>,
) {
    let stage = node.name.clone();
    ctx.fail(match failure {
        Ok(error) => PipelineError::Stage { stage, frame: index, error },
        Err(payload) => {
            PipelineError::StagePanic { stage, frame: index, message: panic_message(&*payload) }
        }
    });
}

pub(super) fn run_sink<In, K: Sink<In>>(
    ctx: &RunContext,
    node: &NodeShared,
    mut sink: K,
    input: &QueueReceiver<In>,
) {
    while let Some(Item { index, captured, value }) = input.pop(&ctx.abort) {
        let started = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| sink.consume(value)));
        let finished = Instant::now();
        match result {
            Ok(Ok(())) => {
                lock(&node.stats).record(started, finished);
                lock(&ctx.end_to_end).record(finished.saturating_duration_since(captured));
            }
            Ok(Err(error)) => {
                item_failed(ctx, node, index, Ok(error));
                break;
            }
            // The sink's state is unknown after a panic: do not call `finish`.
            Err(payload) => return item_failed(ctx, node, index, Err(payload)),
        }
    }
    match panic::catch_unwind(AssertUnwindSafe(|| sink.finish())) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => ctx.fail(PipelineError::Finish { stage: node.name.clone(), error }),
        Err(payload) => {
            let message = panic_message(&*payload);
            ctx.fail(PipelineError::FinishPanic { stage: node.name.clone(), message });
        }
    }
}
