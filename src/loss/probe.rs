//! The loss file probe behind `livedepth loss`: reads the inputs from an npz file, runs the loss
//! forward and backward, and writes every output to an npz file (atomically).
