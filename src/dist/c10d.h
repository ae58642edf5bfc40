// c10d.h — the handles src/dist/c10d.cpp gives Rust, shared with src/dist/nccl.cpp (a separate
// shared object, built with the same compiler and flags) so that it can add a backend to a group.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct moontune_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct moontune_group {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};
