// The two CUDA runtime types TensorRT's headers name in their interfaces (opaque handles), for
// building the TensorRT shim without a CUDA toolkit. livedepth never calls the CUDA runtime
// from C++: streams are passed through as the driver's handles, which these types alias.
#pragma once

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
