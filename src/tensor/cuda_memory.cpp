// cuda_memory.cpp — the CUDA caching allocator's memory statistics, which libtorch offers only
// in C++: bytes allocated and reserved on a device (torch.cuda.memory_allocated/_reserved).
// Compiled by build.rs when libtorch has CUDA; called only when CUDA is available.

#include <c10/cuda/CUDACachingAllocator.h>

extern "C" int moontune_cuda_memory(int device, int64_t* allocated, int64_t* reserved) {
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].current;
    *reserved = stats.reserved_bytes[all].current;
    return 0;
  } catch (...) {
    return -1;
  }
}
