// c10d.cpp — PyTorch's distributed engine (c10d) for src/dist/c10d.rs: a TCPStore for the
// rendezvous, a ProcessGroup backed by Gloo (CPU tensors) made from it, the collectives a recipe
// calls, and c10d's Reducer, which averages gradients in buckets during backward as DDP does.
//
// ProcessGroupGloo.hpp includes Gloo's own headers, which the torch wheel does not ship; they
// come from Debian's libgloo-dev (tools/env.sh installs it). Where they are missing this file
// still compiles and moontune_dist_has_gloo() says so; every other call then reports it.
//
// Every function catches every C++ exception (guarded.h). A `tensor` is tch's handle, a
// heap-allocated at::Tensor.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#if __has_include(<gloo/context.h>)
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../tensor/guarded.h"
#include "c10d.h"

typedef at::Tensor* tensor;

struct moontune_reducer {
  std::shared_ptr<c10d::Reducer> reducer;
};

namespace {

using moontune::guarded;

std::vector<at::Tensor> tensors(const tensor* ts, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

// sum, max, min (avg is a sum divided on the Rust side: Gloo has no AVG).
c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::MAX;
    case 2: return c10d::ReduceOp::MIN;
    case 3: return c10d::ReduceOp::PRODUCT;
  }
  throw std::invalid_argument("unknown reduce op");
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait();
}

}  // namespace

extern "C" {

bool moontune_dist_has_gloo() {
#ifdef USE_C10D_GLOO
  return true;
#else
  return false;
#endif
}

// A TCPStore at host:port (the server when `server`, listening on `port`, 0 for any free one),
// its keys under `prefix`; `port_out` gets the port it listens on or reached.
char* moontune_store_new(const char* host, int port, bool server, int world, int64_t timeout_ms, const char* prefix, moontune_store** out, int* port_out) {
  return guarded([&] {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = server;
    options.waitWorkers = false;
    options.numWorkers = std::nullopt;
    options.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    *port_out = tcp->getPort();
    c10::intrusive_ptr<c10d::Store> store = tcp;
    if (prefix != nullptr && prefix[0] != '\0') store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    *out = new moontune_store{store};
  });
}

void moontune_store_free(moontune_store* s) {
  delete s;
}

char* moontune_store_set(moontune_store* s, const char* key, const uint8_t* data, int64_t len) {
  return guarded([&] { s->store->set(key, std::vector<uint8_t>(data, data + len)); });
}

char* moontune_store_check(moontune_store* s, const char* key, bool* found) {
  return guarded([&] { *found = s->store->check({std::string(key)}); });
}

// The value of `key`, waiting for it up to the store's timeout; the caller frees *data with free().
char* moontune_store_get(moontune_store* s, const char* key, uint8_t** data, int64_t* len) {
  return guarded([&] {
    auto value = s->store->get(key);
    *len = static_cast<int64_t>(value.size());
    *data = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
    if (*data == nullptr) throw std::bad_alloc();
    if (!value.empty()) std::memcpy(*data, value.data(), value.size());
  });
}

// A process group of `size` ranks on Gloo, meeting through `store`.
char* moontune_group_new(moontune_store* s, int rank, int size, int64_t timeout_ms, moontune_group** out) {
  return guarded([&] {
#ifdef USE_C10D_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create_default(std::chrono::milliseconds(timeout_ms));
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, options);
    auto group = c10::make_intrusive<c10d::ProcessGroup>(s->store, rank, size);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    // CUDA tensors go through Gloo too (staged through host memory) until an NCCL backend is
    // added for them (nccl.cpp).
    group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
    *out = new moontune_group{group};
#else
    throw std::runtime_error("this moontune was built without Gloo's headers (Debian's libgloo-dev); run tools/env.sh and rebuild");
#endif
  });
}

void moontune_group_free(moontune_group* g) {
  delete g;
}

char* moontune_all_reduce(moontune_group* g, tensor t, int op) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    wait(g->group->allreduce(ts, options));
  });
}

char* moontune_broadcast(moontune_group* g, tensor t, int src) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions options;
    options.rootRank = src;
    wait(g->group->broadcast(ts, options));
  });
}

// Every rank's `t` into `outs` (one tensor per rank, in rank order).
char* moontune_all_gather(moontune_group* g, tensor t, const tensor* outs, int64_t n) {
  return guarded([&] {
    std::vector<std::vector<at::Tensor>> out{tensors(outs, n)};
    std::vector<at::Tensor> in{*t};
    wait(g->group->allgather(out, in));
  });
}

// `out` gets the reduction over ranks of their `ins[rank]` (one input per rank).
char* moontune_reduce_scatter(moontune_group* g, const tensor* ins, int64_t n, tensor out, int op) {
  return guarded([&] {
    std::vector<at::Tensor> outs{*out};
    std::vector<std::vector<at::Tensor>> in{tensors(ins, n)};
    c10d::ReduceScatterOptions options;
    options.reduceOp = reduce_op(op);
    wait(g->group->reduce_scatter(outs, in, options));
  });
}

char* moontune_barrier(moontune_group* g) {
  return guarded([&] { wait(g->group->barrier()); });
}

// A Reducer over `params` (leaves that require grad), bucketed as DDP buckets them: the first
// bucket small (1 MiB) so that its all-reduce starts early, the rest up to `bucket_bytes`, in
// reverse order of the parameters (the order backward produces their gradients).
char* moontune_reducer_new(moontune_group* g, const tensor* params, int64_t n, int64_t bucket_bytes, bool find_unused, moontune_reducer** out) {
  return guarded([&] {
    auto list = tensors(params, n);
    const int64_t first_bucket = std::min<int64_t>(bucket_bytes, 1 << 20);
    std::vector<bool> sparse(list.size(), false);
    auto assignment = c10d::compute_bucket_assignment_by_size(list, {static_cast<size_t>(first_bucket), static_cast<size_t>(bucket_bytes)}, sparse);
    auto buckets = std::get<0>(assignment);
    std::reverse(buckets.begin(), buckets.end());
    auto reducer = std::make_shared<c10d::Reducer>(list, buckets, g->group, sparse, bucket_bytes, find_unused, false, std::unordered_map<size_t, std::string>{}, first_bucket, false, false, std::vector<int64_t>{});
    *out = new moontune_reducer{reducer};
  });
}

// Arms the reducer for the next backward from `outputs` (which it walks for unused parameters).
char* moontune_reducer_prepare(moontune_reducer* r, const tensor* outputs, int64_t n) {
  return guarded([&] { r->reducer->prepare_for_backward(tensors(outputs, n)); });
}

void moontune_reducer_free(moontune_reducer* r) {
  try {
    delete r;
  } catch (...) {
    // ~Reducer may throw (noexcept(false)) when a backward was left unfinished; nothing to do.
  }
}

}  // extern "C"
