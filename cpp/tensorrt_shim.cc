// livedepth's TensorRT shim: see tensorrt_shim.h. Every failure throws std::runtime_error with
// what failed and TensorRT's own last error messages; cxx turns it into a Rust Err.

#include "livedepth/cpp/tensorrt_shim.h"

#include <dlfcn.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "NvInfer.h"
#include "NvOnnxParser.h"
#include "livedepth/src/engine/tensorrt/ffi.rs.h"

namespace livedepth {
namespace trt {

namespace {

// The oldest TensorRT this shim speaks to: JetPack 6's. Every call below exists in 10.3.
constexpr int32_t kOldestVersion = 100300;

using CreateBuilder = void* (*)(void* logger, int32_t version);
using CreateRuntime = void* (*)(void* logger, int32_t version);
using CreateRefitter = void* (*)(void* engine, void* logger, int32_t version);
using CreateParser = void* (*)(void* network, void* logger, int version);
using CreateParserRefitter = void* (*)(void* refitter, void* logger, int32_t version);
// The CUDA driver API calls for the engine's stream (libcuda, present wherever a GPU is).
using StreamCreate = int (*)(void** stream, unsigned int flags);
using StreamSynchronize = int (*)(void* stream);
using StreamDestroy = int (*)(void* stream);
using LibraryVersion = int32_t (*)();

// Forwards TensorRT's messages to Rust's log (tracing) and keeps the last errors for the
// exception texts.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        int32_t level = static_cast<int32_t>(severity);
        try {
            tensorrt_log(level, rust::Str(msg));
        } catch (...) {
            // A message that is not UTF-8: still kept below.
        }
        if (severity <= Severity::kERROR) {
            std::lock_guard<std::mutex> lock(mutex_);
            errors_.emplace_back(msg);
            if (errors_.size() > 8) errors_.erase(errors_.begin());
        }
    }

    // The errors logged since the last call, joined (empty when none).
    std::string take_errors() {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string joined;
        for (auto const& e : errors_) {
            joined += joined.empty() ? "" : "; ";
            joined += e;
        }
        errors_.clear();
        return joined;
    }

private:
    std::mutex mutex_;
    std::vector<std::string> errors_;
};

std::string dl_error() {
    char const* e = dlerror();
    return e ? e : "unknown dlopen error";
}

template <typename F>
F symbol(void* handle, char const* name, std::string const& library) {
    dlerror();
    void* address = dlsym(handle, name);
    if (!address) {
        throw std::runtime_error(library + " has no symbol " + name + " (" + dl_error() +
                                 "): not a TensorRT 10 library");
    }
    return reinterpret_cast<F>(address);
}

// Deletes TensorRT objects through their virtual destructors (TensorRT 10's ownership rule).
template <typename T>
struct Deleter {
    void operator()(T* object) const { delete object; }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

std::string version_text(int32_t v) {
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
           std::to_string(v % 100);
}

// A rust::Slice or rust::Vec of int64 as TensorRT dimensions.
template <typename Values>
nvinfer1::Dims dims_of(Values const& values, char const* what) {
    nvinfer1::Dims dims{};
    if (values.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS)) {
        throw std::runtime_error(std::string(what) + " has too many dimensions");
    }
    dims.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i) dims.d[i] = values[i];
    return dims;
}

}  // namespace

struct LibraryState {
    void* nvinfer = nullptr;
    void* onnxparser = nullptr;
    CreateBuilder create_builder = nullptr;
    CreateRuntime create_runtime = nullptr;
    CreateRefitter create_refitter = nullptr;
    CreateParser create_parser = nullptr;
    CreateParserRefitter create_parser_refitter = nullptr;
    int32_t version = 0;
    int32_t parser_version = 0;
    Logger logger;

    // "what: TensorRT's errors" for an exception.
    std::runtime_error failure(std::string what) {
        std::string errors = logger.take_errors();
        if (!errors.empty()) what += ": " + errors;
        return std::runtime_error(what);
    }

    ~LibraryState() {
        // The libraries stay loaded: TensorRT registers process-wide state (plugins, CUDA
        // callbacks) that must not outlive its code.
    }
};

// The CUDA driver's stream functions, or nulls without libcuda (then the legacy stream is used).
struct StreamApi {
    StreamCreate create = nullptr;
    StreamSynchronize synchronize = nullptr;
    StreamDestroy destroy = nullptr;

    static StreamApi const& get() {
        static StreamApi const api = [] {
            StreamApi a;
            if (void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
                a.create = reinterpret_cast<StreamCreate>(dlsym(cuda, "cuStreamCreate"));
                a.synchronize = reinterpret_cast<StreamSynchronize>(dlsym(cuda, "cuStreamSynchronize"));
                a.destroy = reinterpret_cast<StreamDestroy>(dlsym(cuda, "cuStreamDestroy_v2"));
            }
            return a;
        }();
        return api;
    }
};

struct EngineState {
    std::shared_ptr<LibraryState> library;
    // The engine's stream (CU_STREAM_DEFAULT flags: implicitly ordered with the legacy stream,
    // so libtorch's uploads and downloads on it need no events); null: the legacy stream.
    void* stream = nullptr;
    Owned<nvinfer1::IRuntime> runtime;
    Owned<nvinfer1::ICudaEngine> engine;
    Owned<nvinfer1::IExecutionContext> context;
    Owned<nvinfer1::IRefitter> refitter;
};

std::unique_ptr<Library> open_library(rust::Str nvinfer, rust::Str onnxparser, rust::Slice<const rust::String> preload) {
    auto state = std::make_shared<LibraryState>();
    for (auto const& path : preload) {
        // Best effort: a failure shows up later as TensorRT's own error.
        dlopen(std::string(path).c_str(), RTLD_NOW | RTLD_GLOBAL);
    }
    std::string nvinfer_name(nvinfer);
    std::string parser_name(onnxparser);
    state->nvinfer = dlopen(nvinfer_name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!state->nvinfer) {
        throw std::runtime_error("cannot load " + nvinfer_name + ": " + dl_error());
    }
    state->onnxparser = dlopen(parser_name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!state->onnxparser) {
        throw std::runtime_error("cannot load " + parser_name + ": " + dl_error());
    }
    auto library_version = symbol<LibraryVersion>(state->nvinfer, "getInferLibVersion", nvinfer_name);
    auto parser_version = symbol<LibraryVersion>(state->onnxparser, "getNvOnnxParserVersion", parser_name);
    state->version = library_version();
    state->parser_version = parser_version();
    if (state->version / 10000 != NV_TENSORRT_MAJOR || state->version < kOldestVersion) {
        throw std::runtime_error(nvinfer_name + " is TensorRT " + version_text(state->version) +
                                 "; livedepth speaks TensorRT 10, from " + version_text(kOldestVersion));
    }
    state->create_builder = symbol<CreateBuilder>(state->nvinfer, "createInferBuilder_INTERNAL", nvinfer_name);
    state->create_runtime = symbol<CreateRuntime>(state->nvinfer, "createInferRuntime_INTERNAL", nvinfer_name);
    state->create_refitter = symbol<CreateRefitter>(state->nvinfer, "createInferRefitter_INTERNAL", nvinfer_name);
    state->create_parser = symbol<CreateParser>(state->onnxparser, "createNvOnnxParser_INTERNAL", parser_name);
    state->create_parser_refitter =
        symbol<CreateParserRefitter>(state->onnxparser, "createNvOnnxParserRefitter_INTERNAL", parser_name);
    return std::make_unique<Library>(std::move(state));
}

Library::Library(std::shared_ptr<LibraryState> state) : state_(std::move(state)) {}

int32_t Library::version() const { return state_->version; }

int32_t Library::compute_capability(int32_t ordinal) const {
    // The CUDA driver API, from the driver library every CUDA machine has (no toolkit).
    using Init = int (*)(unsigned int);
    using DeviceGet = int (*)(int*, int);
    using Attribute = int (*)(int*, int, int);
    constexpr int kMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    constexpr int kMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cuda) throw std::runtime_error("cannot load the CUDA driver (libcuda.so.1): " + dl_error());
    auto init = symbol<Init>(cuda, "cuInit", "libcuda.so.1");
    auto device_get = symbol<DeviceGet>(cuda, "cuDeviceGet", "libcuda.so.1");
    auto attribute = symbol<Attribute>(cuda, "cuDeviceGetAttribute", "libcuda.so.1");
    int device = 0, major = 0, minor = 0;
    if (init(0) != 0 || device_get(&device, ordinal) != 0 || attribute(&major, kMajor, device) != 0 ||
        attribute(&minor, kMinor, device) != 0) {
        throw std::runtime_error("the CUDA driver cannot describe device " + std::to_string(ordinal));
    }
    return major * 10 + minor;
}

rust::Vec<uint8_t> Library::build_serialized(rust::Slice<const uint8_t> onnx, BuildOptions const& options) const {
    LibraryState& lib = *state_;
    lib.logger.take_errors();
    Owned<nvinfer1::IBuilder> builder(
        static_cast<nvinfer1::IBuilder*>(lib.create_builder(&lib.logger, lib.version)));
    if (!builder) throw lib.failure("TensorRT cannot create a builder (is a CUDA device visible?)");
    // Explicit batch is TensorRT 10's only mode: no creation flags.
    Owned<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0));
    if (!network) throw lib.failure("TensorRT cannot create a network definition");
    Owned<nvonnxparser::IParser> parser(
        static_cast<nvonnxparser::IParser*>(lib.create_parser(network.get(), &lib.logger, lib.parser_version)));
    if (!parser) throw lib.failure("TensorRT cannot create an ONNX parser");
    if (!parser->parse(onnx.data(), onnx.size())) {
        std::string why;
        for (int i = 0; i < parser->getNbErrors(); ++i) {
            auto const* e = parser->getError(i);
            why += std::string(why.empty() ? "" : "; ") + "node `" + e->nodeName() + "`: " + e->desc();
        }
        throw lib.failure("the ONNX parser rejected the graph: " + why);
    }
    // Keep only the outputs asked for: TensorRT then prunes what only the others need.
    for (int32_t i = network->getNbOutputs() - 1; i >= 0; --i) {
        nvinfer1::ITensor* output = network->getOutput(i);
        std::string name = output->getName();
        bool keep = std::any_of(options.outputs.begin(), options.outputs.end(),
                                [&](rust::String const& k) { return std::string(k) == name; });
        if (!keep) network->unmarkOutput(*output);
    }
    if (network->getNbOutputs() == 0) throw lib.failure("none of the requested outputs is in the graph");

    Owned<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
    if (!config) throw lib.failure("TensorRT cannot create a builder config");
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, options.workspace_bytes);
    if (options.fp16) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        // Deprecated after 10.3 in favour of strongly typed networks, but the way 10.3 builds FP16.
        config->setFlag(nvinfer1::BuilderFlag::kFP16);
#pragma GCC diagnostic pop
    }
    switch (options.refit) {
    case 0:
        break;
    case 1:
        config->setFlag(nvinfer1::BuilderFlag::kREFIT);
        break;
    case 2:
        config->setFlag(nvinfer1::BuilderFlag::kREFIT_INDIVIDUAL);
        for (auto const& name : options.refittable) {
            std::string n(name);
            if (!network->markWeightsRefittable(n.c_str())) {
                throw lib.failure("the network has no weights named `" + n + "` to mark refittable");
            }
        }
        break;
    default:
        throw std::runtime_error("unknown refit mode " + std::to_string(options.refit));
    }
    nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
    std::string input(options.input);
    using Sel = nvinfer1::OptProfileSelector;
    if (!profile || !profile->setDimensions(input.c_str(), Sel::kMIN, dims_of(options.min_shape, "min_shape")) ||
        !profile->setDimensions(input.c_str(), Sel::kOPT, dims_of(options.opt_shape, "opt_shape")) ||
        !profile->setDimensions(input.c_str(), Sel::kMAX, dims_of(options.max_shape, "max_shape")) ||
        config->addOptimizationProfile(profile) < 0) {
        throw lib.failure("the optimisation profile for input `" + input + "` is invalid");
    }
    Owned<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
    if (!plan || plan->size() == 0) throw lib.failure("TensorRT could not build the engine");
    auto const* bytes = static_cast<uint8_t const*>(plan->data());
    rust::Vec<uint8_t> out;
    out.reserve(plan->size());
    for (size_t i = 0; i < plan->size(); ++i) out.push_back(bytes[i]);
    return out;
}

std::unique_ptr<Engine> Library::deserialize(rust::Slice<const uint8_t> plan) const {
    LibraryState& lib = *state_;
    lib.logger.take_errors();
    auto state = std::make_unique<EngineState>();
    state->library = state_;
    state->runtime.reset(static_cast<nvinfer1::IRuntime*>(lib.create_runtime(&lib.logger, lib.version)));
    if (!state->runtime) throw lib.failure("TensorRT cannot create a runtime");
    state->engine.reset(state->runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!state->engine) throw lib.failure("TensorRT cannot deserialise the engine plan");
    state->context.reset(state->engine->createExecutionContext());
    if (!state->context) throw lib.failure("TensorRT cannot create an execution context");
    // TensorRT deserialised on this thread, so the device's context is current here.
    StreamApi const& streams = StreamApi::get();
    if (!streams.create || streams.create(&state->stream, 0) != 0) {
        state->stream = nullptr;
        tensorrt_log(2, rust::Str("no CUDA stream of its own; the engine runs on the legacy default stream"));
    }
    return std::make_unique<Engine>(std::move(state));
}

Engine::Engine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}

Engine::~Engine() {
    // Work still queued (a frame, a refit) finishes before its objects go.
    StreamApi const& streams = StreamApi::get();
    if (state_->stream && streams.synchronize) streams.synchronize(state_->stream);
    // Refitter and context before the engine, the engine before its runtime.
    state_->refitter.reset();
    state_->context.reset();
    state_->engine.reset();
    state_->runtime.reset();
    if (state_->stream && streams.destroy) streams.destroy(state_->stream);
}

rust::Vec<rust::String> Engine::io_tensor_names() const {
    rust::Vec<rust::String> inputs, outputs;
    auto const& engine = *state_->engine;
    for (int32_t i = 0; i < engine.getNbIOTensors(); ++i) {
        char const* name = engine.getIOTensorName(i);
        bool input = engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
        (input ? inputs : outputs).push_back(rust::String(name));
    }
    for (auto const& o : outputs) inputs.push_back(o);
    return inputs;
}

void Engine::set_input_shape(rust::Str name, rust::Slice<const int64_t> dims) {
    std::string n(name);
    if (!state_->context->setInputShape(n.c_str(), dims_of(dims, "input shape"))) {
        throw state_->library->failure("input `" + n + "` does not accept that shape");
    }
}

void Engine::set_address(rust::Str name, uint64_t address) {
    std::string n(name);
    if (!state_->context->setTensorAddress(n.c_str(), reinterpret_cast<void*>(address))) {
        throw state_->library->failure("cannot bind tensor `" + n + "`");
    }
}

void Engine::enqueue() {
    if (!state_->context->enqueueV3(static_cast<cudaStream_t>(state_->stream))) {
        throw state_->library->failure("enqueueV3 failed");
    }
}

namespace {
nvinfer1::IRefitter& refitter_of(EngineState& state) {
    if (!state.refitter) {
        LibraryState& lib = *state.library;
        state.refitter.reset(static_cast<nvinfer1::IRefitter*>(
            lib.create_refitter(state.engine.get(), &lib.logger, lib.version)));
        if (!state.refitter) throw lib.failure("TensorRT cannot create a refitter (was the engine built refittable?)");
    }
    return *state.refitter;
}

// The names a refitter query (getAllWeights, getMissingWeights: size and array in, count out)
// lists: asked once for the count, then for the names.
template <typename Query>
rust::Vec<rust::String> refitter_names(Query query) {
    int32_t count = query(0, nullptr);
    std::vector<char const*> names(static_cast<size_t>(std::max(count, 0)));
    count = query(static_cast<int32_t>(names.size()), names.data());
    rust::Vec<rust::String> out;
    size_t n = std::min(static_cast<size_t>(std::max(count, 0)), names.size());
    for (size_t i = 0; i < n; ++i) out.push_back(rust::String(names[i]));
    return out;
}
}  // namespace

rust::Vec<rust::String> Engine::refittable_weights() {
    nvinfer1::IRefitter& refitter = refitter_of(*state_);
    return refitter_names([&](int32_t size, char const** names) { return refitter.getAllWeights(size, names); });
}

void Engine::refit_weight(rust::Str name, uint64_t address, int64_t count, bool on_device) {
    nvinfer1::IRefitter& refitter = refitter_of(*state_);
    std::string n(name);
    nvinfer1::Weights weights{nvinfer1::DataType::kFLOAT, reinterpret_cast<void const*>(address), count};
    auto location = on_device ? nvinfer1::TensorLocation::kDEVICE : nvinfer1::TensorLocation::kHOST;
    if (!refitter.setNamedWeights(n.c_str(), weights, location)) {
        throw state_->library->failure("the refitter rejected weights `" + n + "` (" + std::to_string(count) +
                                       " floats)");
    }
}

rust::Vec<rust::String> Engine::missing_weights() {
    nvinfer1::IRefitter& refitter = refitter_of(*state_);
    return refitter_names([&](int32_t size, char const** names) { return refitter.getMissingWeights(size, names); });
}

void Engine::refit_commit() {
    nvinfer1::IRefitter& refitter = refitter_of(*state_);
    if (!refitter.refitCudaEngineAsync(static_cast<cudaStream_t>(state_->stream))) {
        throw state_->library->failure("refitCudaEngineAsync failed");
    }
}

void Engine::refit_from_onnx(rust::Slice<const uint8_t> onnx) {
    nvinfer1::IRefitter& refitter = refitter_of(*state_);
    LibraryState& lib = *state_->library;
    Owned<nvonnxparser::IParserRefitter> parser(static_cast<nvonnxparser::IParserRefitter*>(
        lib.create_parser_refitter(&refitter, &lib.logger, lib.parser_version)));
    if (!parser) throw lib.failure("TensorRT cannot create an ONNX parser refitter");
    if (!parser->refitFromBytes(onnx.data(), onnx.size())) {
        std::string why;
        for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
            why += std::string(why.empty() ? "" : "; ") + parser->getError(i)->desc();
        }
        throw lib.failure("the ONNX parser refitter rejected the new weights: " + why);
    }
}

}  // namespace trt
}  // namespace livedepth
