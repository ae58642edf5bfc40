// nccl.cpp — PyTorch's NCCL backend for CUDA tensors, added to a process group made by
// src/dist/c10d.cpp (whose Gloo backend keeps the CPU tensors). It is built as its own shared
// object (build.rs), linked with libtorch_cuda, and loaded only when a run asks for NCCL
// (src/dist/nccl.rs): linked into the binary it would make every CPU-only run load libtorch_cuda.
//
// ProcessGroupNCCL's constructor needs at least one visible GPU; its error says so. Every
// function catches every C++ exception (guarded.h).

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

#include "../tensor/guarded.h"
#include "c10d.h"

extern "C" {

// Adds an NCCL backend of `size` ranks, meeting through `store`, to `g` for CUDA tensors; its
// collectives give up after `timeout_ms`. The group's default backend stays Gloo (barriers).
char* moontune_nccl_attach(moontune_group* g, moontune_store* s, int rank, int size, int64_t timeout_ms) {
  return moontune::guarded([&] {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, size, options);
    g->group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
  });
}

}  // extern "C"
