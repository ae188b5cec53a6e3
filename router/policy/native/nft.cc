// nftables without a fork: the bridge filters' scripts (router/policy/bridge-filter.ts)
// go to libnftables, the library the `nft` command itself is a thin front end to
// (libnftables(3): nft_ctx_new, nft_run_cmd_from_buffer, buffered output and errors).
// Forking `nft` from the router (a ~90 MB process) blocked its event loop in fork/exec
// for 7–30 ms per call under attach/detach churn (issue #16's soak profile: spawn was
// half of the router's busy time).
//
//   run(script, json) -> Promise<{ ok: boolean, out: string, err: string }>
//     one nft script (one or more commands, newline-separated; run as one transaction as
//     `nft -f -` does) on a libuv worker thread; `json` sets the JSON output flag (`nft -j`).
//     `ok` false with nft's error text in `err` when nft refused the script.
//
// libnftables.so.1 is opened with dlopen at first use (Debian ships it with the nft
// command, package libnftables1; no -dev package is needed to build): without it,
// load() throws and the caller forks `nft` as before. Calls are serialised by a mutex
// and each gets a fresh context, so no cache survives between two scripts. The thread
// runs in the router's own network namespace (no pool thread is left elsewhere:
// router/host/native/netlink.cc moves back or aborts).
#include <napi.h>

#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <time.h>

#include <mutex>
#include <string>

namespace {

struct nft_ctx;
// The prototypes of libnftables(3), as its public header declares them.
struct Lib {
  nft_ctx* (*ctx_new)(uint32_t flags);
  void (*ctx_free)(nft_ctx*);
  int (*buffer_output)(nft_ctx*);
  int (*buffer_error)(nft_ctx*);
  const char* (*get_output)(nft_ctx*);
  const char* (*get_error)(nft_ctx*);
  void (*set_output_flags)(nft_ctx*, unsigned int);
  unsigned int (*get_output_flags)(nft_ctx*);
  int (*run_buffer)(nft_ctx*, const char*);
};

const uint32_t NFT_CTX_DEFAULT = 0;
const unsigned int NFT_CTX_OUTPUT_JSON = 1u << 4;  // libnftables.h: the flag `nft -j` sets
const size_t MAX_SCRIPT = 16u << 20;                  // 16 MiB: far above any ruleset of ours

Lib lib;
bool loaded = false;
std::string loadError;
std::mutex runLock;
int64_t lastTrim = -100;  // CLOCK_MONOTONIC seconds of the last malloc_trim (under runLock)

bool Load() {
  if (loaded) return true;
  if (!loadError.empty()) return false;
  void* h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    loadError = e ? e : "dlopen libnftables.so.1 failed";
    return false;
  }
  struct {
    const char* name;
    void** slot;
  } syms[] = {
      {"nft_ctx_new", reinterpret_cast<void**>(&lib.ctx_new)},
      {"nft_ctx_free", reinterpret_cast<void**>(&lib.ctx_free)},
      {"nft_ctx_buffer_output", reinterpret_cast<void**>(&lib.buffer_output)},
      {"nft_ctx_buffer_error", reinterpret_cast<void**>(&lib.buffer_error)},
      {"nft_ctx_get_output_buffer", reinterpret_cast<void**>(&lib.get_output)},
      {"nft_ctx_get_error_buffer", reinterpret_cast<void**>(&lib.get_error)},
      {"nft_ctx_output_set_flags", reinterpret_cast<void**>(&lib.set_output_flags)},
      {"nft_ctx_output_get_flags", reinterpret_cast<void**>(&lib.get_output_flags)},
      {"nft_run_cmd_from_buffer", reinterpret_cast<void**>(&lib.run_buffer)},
  };
  for (auto& s : syms) {
    *s.slot = dlsym(h, s.name);
    if (!*s.slot) {
      loadError = std::string("libnftables.so.1 lacks ") + s.name;
      return false;
    }
  }
  loaded = true;
  return true;
}

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, std::string script, bool json)
      : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), script(std::move(script)), json(json) {}
  Napi::Promise::Deferred deferred;

  void Execute() override {
    std::lock_guard<std::mutex> g(runLock);
    nft_ctx* ctx = lib.ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
      err = "nft_ctx_new failed (out of memory?)";
      return;
    }
    lib.buffer_output(ctx);
    lib.buffer_error(ctx);
    if (json) lib.set_output_flags(ctx, lib.get_output_flags(ctx) | NFT_CTX_OUTPUT_JSON);
    ok = lib.run_buffer(ctx, script.c_str()) == 0;
    const char* o = lib.get_output(ctx);
    const char* e = lib.get_error(ctx);
    out = o ? o : "";
    err = e ? e : "";
    lib.ctx_free(ctx);
    // Each run fetches the whole ruleset into a cache and frees it; glibc keeps those pages
    // in the pool threads' arenas (RSS +20–30 MiB per router under attach/detach churn).
    // Give them back, but at most every 10 s: malloc_trim locks every arena, the main
    // thread's too, and trimming after each run halved the churn soak's rate.
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - lastTrim >= 10) {
      lastTrim = now.tv_sec;
      malloc_trim(0);
    }
  }
  void OnOK() override {
    Napi::Object r = Napi::Object::New(Env());
    r.Set("ok", Napi::Boolean::New(Env(), ok));
    r.Set("out", Napi::String::New(Env(), out));
    r.Set("err", Napi::String::New(Env(), err));
    deferred.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

 private:
  std::string script, out, err;
  bool json;
  bool ok = false;
};

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "nft: run takes a script string");
  std::string script = info[0].As<Napi::String>().Utf8Value();
  if (script.size() > MAX_SCRIPT || script.find('\0') != std::string::npos) throw Napi::RangeError::New(env, "nft: script too large or holds a NUL byte");
  if (!Load()) throw Napi::Error::New(env, "nft: " + loadError);
  RunWorker* w = new RunWorker(env, std::move(script), info[1].ToBoolean().Value());
  Napi::Promise p = w->deferred.Promise();
  w->Queue();
  return p;
}

// load() -> undefined; throws when libnftables.so.1 cannot be opened (caller forks nft).
Napi::Value LoadLib(const Napi::CallbackInfo& info) {
  if (!Load()) throw Napi::Error::New(info.Env(), "nft: " + loadError);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("load", Napi::Function::New(env, LoadLib));
  return exports;
}

}  // namespace

NODE_API_MODULE(nft, Init)
