// The router's native heap housekeeping (build/Release/heap.node, wrapped by
// router/daemon/heap.ts): glibc's malloc keeps memory freed in the middle of its heap
// (V8's compiler zones, OpenSSL and libnftables scratch) mapped and resident until the
// top of the heap is free. malloc_trim(0) (glibc, malloc(3)) hands every free page of
// every arena back to the kernel with madvise(MADV_DONTNEED); the mappings stay, so
// later allocations reuse them at the cost of a page fault.
//
// The second job is what only start-up read: node's boot, module loading and the
// first joins touch tens of MiB of the node binary (machine code, V8's start-up
// snapshot, builtin modules' sources and code cache, ICU data) and of the libraries,
// and every page touched stays mapped into the process (and counted in its RSS) until
// the kernel reclaims it under memory pressure. dropCodePages() unmaps those pages now
// (madvise(2) MADV_DONTNEED on read-only file mappings): the page cache keeps the
// file's pages, and what the router still uses is mapped again on its next use by a
// minor fault (no I/O). Only pages that are still the file's own are ever dropped.
#include <napi.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// mallocTrim() -> boolean: true when glibc released at least one page. No arguments,
// no errors. glibc only: this file does not build against a libc without malloc_trim.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

// Unmaps, within [start, end), each run of pages that are present and still the file's
// own (pagemap(5): bit 63 present, bit 61 file-page or shared-anon; a private copy
// made by a write, e.g. a relocated read-only-after-relocation page, is present
// without bit 61 and is never advised, since MADV_DONTNEED would revert it to the
// file). The flag bits need no privilege. Adds the bytes advised to *dropped; false
// when pagemap could not be read or madvise refused (what was advised stays advised).
bool DropFilePages(int pagemap, uintptr_t start, uintptr_t end, uintptr_t page, double* dropped) {
  constexpr size_t kBatch = 512;
  uint64_t entries[kBatch];
  uintptr_t runStart = 0;
  bool inRun = false, ok = true;
  auto flush = [&](uintptr_t runEnd) {
    if (!inRun) return;
    inRun = false;
    if (madvise(reinterpret_cast<void*>(runStart), runEnd - runStart, MADV_DONTNEED) == 0) {
      *dropped += static_cast<double>(runEnd - runStart);
    } else {
      ok = false;
    }
  };
  for (uintptr_t at = start; at < end;) {
    size_t n = (end - at) / page;
    if (n > kBatch) n = kBatch;
    off_t off = static_cast<off_t>((at / page) * sizeof(uint64_t));
    ssize_t got = pread(pagemap, entries, n * sizeof(uint64_t), off);
    if (got != static_cast<ssize_t>(n * sizeof(uint64_t))) {
      flush(at);
      return false;
    }
    for (size_t i = 0; i < n; i++) {
      uintptr_t addr = at + i * page;
      bool present = (entries[i] >> 63) & 1;
      bool file = (entries[i] >> 61) & 1;
      if (present && file) {
        if (!inRun) {
          inRun = true;
          runStart = addr;
        }
      } else {
        flush(addr);
      }
    }
    at += n * page;
  }
  flush(end);
  return ok;
}

// dropCodePages() -> { ranges: number, bytes: number, skipped: number }: unmaps the
// resident, unmodified pages of every read-only mapping of a regular file (the node
// binary's machine code, V8's start-up snapshot and builtin sources in its read-only
// data, shared libraries, addons) with MADV_DONTNEED. ranges counts the mappings
// looked at, bytes the bytes advised (all of them were resident), skipped the mappings
// where pagemap could not be read or madvise refused. Writable and anonymous mappings
// (V8's heap and JIT code), memfd and deleted files are never touched. Linux only; no
// errors: when /proc/self/maps or pagemap cannot be read it returns zeros.
Napi::Value DropCodePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double ranges = 0, bytes = 0, skipped = 0;
  const long pageSize = sysconf(_SC_PAGESIZE);
  FILE* maps = fopen("/proc/self/maps", "re");
  int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (maps != nullptr && pagemap >= 0 && pageSize > 0) {
    const uintptr_t page = static_cast<uintptr_t>(pageSize);
    // Collect first: madvise while reading maps would change what is being read.
    struct Range { uintptr_t start, end; };
    std::vector<Range> readOnly;
    char line[4096];
    while (fgets(line, sizeof line, maps) != nullptr) {
      unsigned long start = 0, end = 0, inode = 0, offset = 0;
      char perms[8] = {0};
      unsigned devMajor = 0, devMinor = 0;
      int pathAt = 0;
      if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &start, &end, perms, &offset, &devMajor,
                 &devMinor, &inode, &pathAt) < 7) continue;
      const char* path = line + pathAt;
      if (inode == 0 || path[0] != '/') continue;
      if (strncmp(path, "/memfd:", 7) == 0 || strstr(path, " (deleted)") != nullptr) continue;
      if (perms[0] != 'r' || perms[1] != '-') continue;
      if (end <= start || start % page != 0 || end % page != 0) continue;
      readOnly.push_back({start, end});
    }
    for (const Range& r : readOnly) {
      ranges++;
      if (!DropFilePages(pagemap, r.start, r.end, page, &bytes)) skipped++;
    }
  }
  if (maps != nullptr) fclose(maps);
  if (pagemap >= 0) close(pagemap);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ranges", ranges);
  out.Set("bytes", bytes);
  out.Set("skipped", skipped);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("dropCodePages", Napi::Function::New(env, DropCodePages, "dropCodePages"));
  return exports;
}

}  // namespace

NODE_API_MODULE(heap, Init)
