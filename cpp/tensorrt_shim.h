// livedepth's shim over TensorRT's C++ API (the `tensorrt` feature; Rust side:
// src/engine/tensorrt/ffi.rs). It is compiled against TensorRT 10 headers only: libnvinfer and
// libnvonnxparser are opened with dlopen at run time and reached through their four exported C
// factory functions; every other call is a virtual call on the objects those return. So the
// binary links and starts without TensorRT, and says why it cannot use it.
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace livedepth {
namespace trt {

struct BuildOptions;
struct LibraryState;
struct EngineState;

// An opened libnvinfer (+ libnvonnxparser) and the logger every object of it reports to.
class Library {
public:
    explicit Library(std::shared_ptr<LibraryState> state);
    // TensorRT's version as the library reports it (major * 10000 + minor * 100 + patch).
    int32_t version() const;
    // Compute capability of CUDA device `ordinal` as major * 10 + minor (from libcuda).
    int32_t compute_capability(int32_t ordinal) const;
    // Parses `onnx` and builds a serialised engine (a plan) with `options`.
    rust::Vec<uint8_t> build_serialized(rust::Slice<const uint8_t> onnx, BuildOptions const& options) const;
    // Deserialises a plan into an engine with one execution context and its own CUDA stream
    // (a blocking stream: ordered with libtorch's legacy default stream both ways).
    std::unique_ptr<class Engine> deserialize(rust::Slice<const uint8_t> plan) const;

private:
    std::shared_ptr<LibraryState> state_;
};

// A deserialised engine, its execution context and (once asked for) its refitter.
class Engine {
public:
    explicit Engine(std::unique_ptr<EngineState> state);
    ~Engine();
    // Names of the engine's input and output tensors, inputs first.
    rust::Vec<rust::String> io_tensor_names() const;
    void set_input_shape(rust::Str name, rust::Slice<const int64_t> dims);
    // Binds tensor `name` to device memory at `address` (kept until rebound).
    void set_address(rust::Str name, uint64_t address);
    // Runs the engine on its stream.
    void enqueue();
    // Every weight name the refitter can set.
    rust::Vec<rust::String> refittable_weights();
    // Hands the refitter new FP32 values for weight `name`: `count` floats at `address`, in
    // device memory (`on_device`) or host memory. They must stay valid until refit_commit's
    // work has run on its stream.
    void refit_weight(rust::Str name, uint64_t address, int64_t count, bool on_device);
    // Weights that must still be given before a refit can be committed.
    rust::Vec<rust::String> missing_weights();
    // Applies the given weights on the engine's stream, ordered before later frames.
    void refit_commit();
    // Hands the refitter every weight of `onnx`, an export of the same graph with new values,
    // through the ONNX parser's refitter (which knows the weights the parser folded, e.g.
    // batch normalisation into convolutions); then refit_commit applies them.
    void refit_from_onnx(rust::Slice<const uint8_t> onnx);

private:
    std::unique_ptr<EngineState> state_;
};

// Opens `nvinfer` and `onnxparser` (paths or sonames for dlopen), after loading `preload`
// (TensorRT's builder resource library from the same folder, which it opens by bare name).
std::unique_ptr<Library> open_library(rust::Str nvinfer, rust::Str onnxparser, rust::Slice<const rust::String> preload);

}  // namespace trt
}  // namespace livedepth
