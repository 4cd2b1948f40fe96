//! The CUDA C++ sources of our kernels (kernels/*.cu), embedded in the binary, and the exact text
//! NVRTC compiles for each module (the shared prelude kernels/common.cuh, then the file).

/// The prelude every module is compiled with: index helpers, SSIM and reductions.
pub const PRELUDE: &str = include_str!("../../kernels/common.cuh");

/// One NVRTC program: a kernels/*.cu file and the `extern "C"` kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelModule {
    /// File stem under kernels/.
    pub name: &'static str,
    /// The file's text.
    pub body: &'static str,
    /// Kernel entry points it defines.
    pub functions: &'static [&'static str],
}

impl KernelModule {
    /// The full program text handed to NVRTC.
    pub fn program_text(&self) -> String {
        format!("{PRELUDE}\n#line 1 \"kernels/{}.cu\"\n{}", self.name, self.body)
    }
}

/// Preprocessing of packed RGB / RGBA / NV12 frames.
pub const PREPROCESS: KernelModule = KernelModule {
    name: "preprocess",
    body: include_str!("../../kernels/preprocess.cu"),
    functions: &["ld_preprocess"],
};

/// Bilinear disparity upsampling and its adjoint.
pub const UPSAMPLE: KernelModule = KernelModule {
    name: "upsample",
    body: include_str!("../../kernels/upsample.cu"),
    functions: &["ld_upsample_bilinear", "ld_upsample_bilinear_adjoint"],
};

/// The fused self-supervised loss, forward and backward.
pub const LOSS: KernelModule = KernelModule {
    name: "loss",
    body: include_str!("../../kernels/loss.cu"),
    functions: &[
        "ld_pose_matrices",
        "ld_identity_error",
        "ld_loss_forward",
        "ld_loss_backward",
        "ld_smooth_sum",
        "ld_smooth_forward",
        "ld_disparity_backward",
        "ld_finalize",
    ],
};

/// Every module, in load order.
pub const ALL: [KernelModule; 3] = [PREPROCESS, UPSAMPLE, LOSS];
