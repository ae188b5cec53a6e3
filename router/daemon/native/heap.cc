// The router's native heap housekeeping (build/Release/heap.node, wrapped by
// router/daemon/heap.ts): glibc's malloc keeps memory freed in the middle of its heap
// (V8's compiler zones, OpenSSL and libnftables scratch) mapped and resident until the
// top of the heap is free. malloc_trim(0) (glibc, malloc(3)) hands every free page of
// every arena back to the kernel with madvise(MADV_DONTNEED); the mappings stay, so
// later allocations reuse them at the cost of a page fault.
#include <napi.h>
#include <malloc.h>

namespace {

// mallocTrim() -> boolean: true when glibc released at least one page. No arguments,
// no errors. glibc only: this file does not build against a libc without malloc_trim.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  return exports;
}

}  // namespace

NODE_API_MODULE(heap, Init)
