//! CI check without a GPU: every kernel module compiles with NVRTC for Orin (sm_87) and
//! Hopper (sm_90), and the PTX cache round-trips. Runs with `--features cuda`; libnvrtc is
//! required (scripts/setup.sh installs the nvidia-cuda-nvrtc wheel), so its absence fails.
#![cfg(feature = "cuda")]

use livedepth::cuda::nvrtc;
use livedepth::cuda::sources;

fn required_nvrtc() -> Option<nvrtc::NvrtcInfo> {
    match nvrtc::load_nvrtc() {
        Ok(info) => Some(info),
        Err(e) => panic!("{e}: this check needs libnvrtc (run scripts/setup.sh)"),
    }
}

#[test]
fn every_kernel_compiles_for_orin_and_hopper() {
    let Some(info) = required_nvrtc() else { return };
    eprintln!("NVRTC {}.{} from {:?}", info.version.0, info.version.1, info.path);
    for arch in ["compute_87", "compute_90", "sm_87", "sm_90"] {
        for module in sources::ALL {
            let ptx = match nvrtc::compile_ptx(&module, arch) {
                Ok(ptx) => ptx,
                Err(e) => panic!("{e}"),
            };
            eprintln!("{arch} kernels/{}.cu: {} bytes of PTX", module.name, ptx.len());
            let target = format!(
                ".target sm_{}",
                arch.trim_start_matches("compute_").trim_start_matches("sm_")
            );
            assert!(ptx.contains(&target), "{} PTX lacks `{target}`", module.name);
            for function in module.functions {
                assert!(
                    ptx.contains(&format!(".entry {function}(")),
                    "{arch}: kernels/{}.cu PTX has no entry {function}",
                    module.name
                );
            }
        }
    }
}

#[test]
fn compile_errors_name_the_kernel_and_carry_the_log() {
    if required_nvrtc().is_none() {
        return;
    }
    let broken = sources::KernelModule {
        name: "broken",
        body: "extern \"C\" __global__ void ld_broken(float* x) { x[0] = undefined_name; }",
        functions: &["ld_broken"],
    };
    let err = nvrtc::compile_ptx(&broken, "compute_87").expect_err("must not compile");
    let msg = err.to_string();
    assert!(msg.contains("kernels/broken.cu") && msg.contains("undefined_name"), "{msg}");
}

#[test]
fn ptx_cache_round_trips_and_keys_on_architecture() {
    if required_nvrtc().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, hit) =
        nvrtc::cached_ptx(&sources::UPSAMPLE, "compute_87", dir.path()).expect("compile");
    assert!(!hit, "an empty cache cannot hit");
    let (second, hit) =
        nvrtc::cached_ptx(&sources::UPSAMPLE, "compute_87", dir.path()).expect("cache");
    assert!(hit, "the second lookup must come from the cache");
    assert_eq!(first, second);
    let files = std::fs::read_dir(dir.path()).expect("read cache").count();
    assert_eq!(files, 1, "one file, no temporary left behind");
    let (_, hit) =
        nvrtc::cached_ptx(&sources::UPSAMPLE, "compute_90", dir.path()).expect("compile");
    assert!(!hit, "another architecture is another key");
    let v = (12, 6);
    assert_ne!(
        nvrtc::cache_key(&sources::UPSAMPLE, "compute_87", v),
        nvrtc::cache_key(&sources::LOSS, "compute_87", v)
    );
}
