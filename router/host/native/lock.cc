// flock(2) for the router lock (router/host/router-lock.ts; build/Release/lock.node):
// Node has no flock() in core, and forking util-linux flock(1) cost a fork of the CLI
// and one of the router on every `weave launch` (issue #20: launches on a busy host).
//
//   tryLock(fd, exclusive) -> boolean
//     flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB): true when taken (the lock
//     belongs to fd's open file description, as flock(1)'s descriptor form), false when
//     another open file description holds a conflicting lock (EWOULDBLOCK). Never blocks.
//     Throws an Error with `code` (EBADF, EINVAL, ...) for anything else; a TypeError
//     (code EINVAL) for a bad argument.
#include <napi.h>

#include <errno.h>
#include <string.h>
#include <sys/file.h>

namespace {

Napi::Error CodedError(Napi::Env env, int err, const char* code) {
  Napi::Error e = Napi::Error::New(env, std::string("flock: ") + strerror(err));
  e.Set("code", Napi::String::New(env, code));
  return e;
}

Napi::Value TryLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::Error e = Napi::TypeError::New(env, "flock: tryLock(fd, exclusive) takes a descriptor and a boolean");
    e.Set("code", Napi::String::New(env, "EINVAL"));
    throw e;
  }
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 0x7fffffff) || d != static_cast<int>(d)) {
    Napi::Error e = Napi::TypeError::New(env, "flock: bad descriptor");
    e.Set("code", Napi::String::New(env, "EINVAL"));
    throw e;
  }
  int op = (info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH) | LOCK_NB;
  for (;;) {
    if (flock(static_cast<int>(d), op) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw CodedError(env, errno, errno == EBADF ? "EBADF" : errno == ENOLCK ? "ENOLCK" : errno == EINVAL ? "EINVAL" : "EIO");
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLock", Napi::Function::New(env, TryLock, "tryLock"));
  return exports;
}

}  // namespace

NODE_API_MODULE(lock, Init)
