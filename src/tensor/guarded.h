// guarded.h — how the C++ shims (shim.cpp, linear4bit.cpp, checkpoint.cpp,
// linear_cross_entropy.cpp) hand an exception to Rust: every exported function runs its body
// through `guarded`, which returns nullptr on success and otherwise a malloc'ed copy of the
// message, which the caller frees with moontune_free_error. No C++ exception crosses over.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>

namespace moontune {

inline char* copy_message(const char* what) {
  char* out = static_cast<char*>(std::malloc(std::strlen(what) + 1));
  if (out != nullptr) std::strcpy(out, what);
  return out;
}

template <typename F>
char* guarded(F body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

}  // namespace moontune
