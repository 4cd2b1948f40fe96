//! CPU twins of the CUDA kernels.
