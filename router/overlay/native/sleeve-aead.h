// Sealing and opening sleeve datagrams in C, for the flow caches (udp.cc, tap.cc).
//
// Cipher: ChaCha20-Poly1305, IETF construction (RFC 8439 section 2.8: 32-byte
// key, 96-bit nonce, 16-byte tag) from OpenSSL's EVP interface (libcrypto; the
// same construction router/crypto/aead.ts gets from libsodium through
// sodium-native, so the bytes on the wire are identical; tests check both
// directions and the RFC's section 2.8.2 vector). No cipher code of our own.
// OpenSSL rather than libsodium because its ChaCha20/Poly1305 use wider SIMD
// (AVX2/AVX-512): about 1.5x faster per full-size datagram on our hosts.
//
// Key schedule once per key, not per datagram: a small per-thread cache maps a
// key to an initialised EVP_CIPHER_CTX (one for sealing, one for opening), so a
// datagram costs one IV set + AAD + payload + tag. A new key (re-key, new epoch,
// new peer) takes a slot, evicting the least recently used one; evicted and
// thread-exit contexts are freed (OpenSSL wipes their key state) and our copy of
// the key is wiped with OPENSSL_cleanse. At most kCtxSlots old keys stay in
// memory until evicted (see docs/SECURITY.md).
//
// Wire format: identical to aead.ts (see its header comment):
//   header (8 B, clear) | epoch (1 B) | counter (56 bit, big-endian) | ciphertext | tag (16 B)
//   associated data = bytes 0..16, nonce = 00 00 00 00 | bytes 8..16.
//
// State shared with JavaScript (plain memory inside a Buffer both sides use, so
// JS and C never disagree about the next counter or which counters were seen):
//
//   seal state, 16 bytes = 2 doubles:
//     [0] next counter (a safe integer, < 2^53 - 1)   [1] key epoch (0..255)
//   open state, 64 + 4 * nBlocks bytes:
//     doubles [0] current epoch  [1] highest counter accepted (-1: none)
//             [2] ok [3] replay [4] auth [5] malformed [6] unknown-key   (outcome counters)
//             [7] nBlocks (ring size in 32-bit blocks, a power of two >= 2)
//     uint32 blocks[nBlocks] from byte 64: the replay window of the current
//     epoch, RFC 6479 ring (the same acceptance rule as crypto/replay-window.ts).
//
// Doubles rather than 64-bit integers because JS reads them through a
// Float64Array at no cost; every value stays below 2^53, so they are exact.
// Only the current epoch is handled here: a datagram of another epoch returns
// kAeadPunt, and the caller hands it to the JS Opener (which keeps the previous
// and next keys and promotes epochs).
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace sleeve_aead {

constexpr size_t kHeaderBytes = 8;
constexpr size_t kSeqBytes = 8;
constexpr size_t kTagBytes = 16;
constexpr size_t kOverhead = kHeaderBytes + kSeqBytes + kTagBytes;
constexpr size_t kKeyBytes = 32;
constexpr double kMaxSeq = 9007199254740991.0;  // 2^53 - 1, as aead.ts MAX_SEQ
constexpr size_t kSealStateBytes = 16;
constexpr size_t kOpenStateHeader = 64;

// open results (the same numbers as aead.ts OPEN_*), plus kAeadPunt.
constexpr int kOpenReplay = -1;
constexpr int kOpenAuth = -2;
constexpr int kOpenMalformed = -3;
constexpr int kOpenUnknownKey = -4;
constexpr int kAeadPunt = -5;
// seal errors
constexpr int kSealExhausted = -1;
constexpr int kSealTooSmall = -2;
constexpr int kSealFailed = -3;  // OpenSSL could not allocate/initialise a context (not input-dependent)

enum OpenCounter { kOk = 2, kReplay = 3, kAuth = 4, kMalformed = 5, kUnknownKey = 6 };

namespace detail {

constexpr int kCtxSlots = 8;

struct CtxSlot {
  uint8_t key[kKeyBytes];
  EVP_CIPHER_CTX* ctx = nullptr;
  uint64_t used = 0;  // LRU tick; 0 = empty
};

// Per-thread, per-direction cache of key-initialised contexts.
struct CtxCache {
  CtxSlot slots[2][kCtxSlots];
  int mru[2] = {0, 0};
  uint64_t tick = 0;
  ~CtxCache() {
    for (auto& dir : slots)
      for (auto& s : dir) {
        if (s.ctx != nullptr) EVP_CIPHER_CTX_free(s.ctx);
        OPENSSL_cleanse(s.key, sizeof s.key);
      }
  }
};

inline CtxCache& Cache() {
  static thread_local CtxCache cache;
  return cache;
}

// The context for `key`, `enc` 1 = seal / 0 = open, with the key schedule
// done; nullptr only if OpenSSL cannot allocate or initialise one. Keys are
// compared in constant time (CRYPTO_memcmp).
inline EVP_CIPHER_CTX* CtxFor(int enc, const uint8_t key[kKeyBytes]) {
  CtxCache& c = Cache();
  CtxSlot* dir = c.slots[enc];
  c.tick++;
  CtxSlot& m = dir[c.mru[enc]];
  if (m.used != 0 && CRYPTO_memcmp(m.key, key, kKeyBytes) == 0) {
    m.used = c.tick;
    return m.ctx;
  }
  int victim = 0;
  for (int i = 0; i < kCtxSlots; i++) {
    CtxSlot& s = dir[i];
    if (s.used != 0 && CRYPTO_memcmp(s.key, key, kKeyBytes) == 0) {
      s.used = c.tick;
      c.mru[enc] = i;
      return s.ctx;
    }
    if (s.used < dir[victim].used) victim = i;
  }
  CtxSlot& v = dir[victim];
  if (v.ctx == nullptr) v.ctx = EVP_CIPHER_CTX_new();
  v.used = 0;
  OPENSSL_cleanse(v.key, sizeof v.key);
  if (v.ctx == nullptr) return nullptr;
  // Full re-initialisation: cipher + key (the IV is set per datagram).
  if (EVP_CIPHER_CTX_reset(v.ctx) != 1 ||
      EVP_CipherInit_ex(v.ctx, EVP_chacha20_poly1305(), nullptr, key, nullptr, enc) != 1) {
    return nullptr;
  }
  memcpy(v.key, key, kKeyBytes);
  v.used = c.tick;
  c.mru[enc] = victim;
  return v.ctx;
}

// RFC 8439 section 2.8 AEAD seal with a 12-byte nonce: writes len bytes of
// ciphertext to out (may equal in) and the 16-byte tag to tag. False on an
// OpenSSL failure (allocation), never on input.
inline bool SealRaw(const uint8_t key[kKeyBytes], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                    const uint8_t* in, size_t len, uint8_t* out, uint8_t tag[kTagBytes]) {
  if (len > 0x7fffffff || aadLen > 0x7fffffff) return false;
  EVP_CIPHER_CTX* ctx = CtxFor(1, key);
  if (ctx == nullptr) return false;
  int n = 0;
  if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce, 1) != 1) return false;
  if (aadLen > 0 && EVP_CipherUpdate(ctx, nullptr, &n, aad, static_cast<int>(aadLen)) != 1) return false;
  if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, static_cast<int>(len)) != 1) return false;
  if (EVP_CipherFinal_ex(ctx, out + len, &n) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes, tag) == 1;
}

// RFC 8439 section 2.8 AEAD open: verifies `tag` over aad and in[0, len) and
// decrypts into out (may equal in). False when the tag does not verify (or on
// an OpenSSL failure); out is then wiped, so no unauthenticated plaintext is
// left behind.
inline bool OpenRaw(const uint8_t key[kKeyBytes], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                    const uint8_t* in, size_t len, const uint8_t tag[kTagBytes], uint8_t* out) {
  bool ok = false;
  int n = 0;
  EVP_CIPHER_CTX* ctx = len <= 0x7fffffff && aadLen <= 0x7fffffff ? CtxFor(0, key) : nullptr;
  if (ctx != nullptr && EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce, 0) == 1 &&
      (aadLen == 0 || EVP_CipherUpdate(ctx, nullptr, &n, aad, static_cast<int>(aadLen)) == 1) &&
      (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, static_cast<int>(len)) == 1) &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes, const_cast<uint8_t*>(tag)) == 1 &&
      EVP_CipherFinal_ex(ctx, out + len, &n) == 1) {
    ok = true;
  }
  if (!ok && len > 0) OPENSSL_cleanse(out, len);
  return ok;
}

}  // namespace detail

// Checks that libcrypto is usable and offers ChaCha20-Poly1305 (call once at
// addon load; false: the addon must refuse to load).
inline bool Init() {
  if (OPENSSL_init_crypto(0, nullptr) != 1 || EVP_chacha20_poly1305() == nullptr) return false;
  static const uint8_t k[kKeyBytes] = {0}, nonce[12] = {0};
  uint8_t buf[1] = {0}, tag[kTagBytes];
  return detail::SealRaw(k, nonce, nullptr, 0, buf, 1, buf, tag) && detail::OpenRaw(k, nonce, nullptr, 0, buf, 1, tag, buf) &&
         buf[0] == 0;
}

// Size of an open state with a window of `bits` bits (power of two >= 64).
inline size_t OpenStateBytes(uint32_t bits) { return kOpenStateHeader + bits / 8; }

// Validates an open state's self-described size against the buffer holding it.
inline bool OpenStateValid(const uint8_t* st, size_t bytes) {
  if (bytes < kOpenStateHeader) return false;
  double nb;
  memcpy(&nb, st + 56, sizeof nb);
  if (!(nb >= 2 && nb <= (1 << 19))) return false;
  uint32_t n = static_cast<uint32_t>(nb);
  if (static_cast<double>(n) != nb || (n & (n - 1)) != 0) return false;
  return bytes >= kOpenStateHeader + 4ull * n;
}

// Seal `plain[0, len)` into `out` (capacity `cap`); plain may be out + 16
// (in place). Returns the datagram length, or kSealExhausted / kSealTooSmall /
// kSealFailed (OpenSSL out of memory; the counter is not consumed).
inline long Seal(double* st, const uint8_t key[kKeyBytes], const uint8_t header[kHeaderBytes],
                 const uint8_t* plain, size_t len, uint8_t* out, size_t cap) {
  if (cap < len + kOverhead) return kSealTooSmall;
  double c = st[0];
  if (!(c >= 0 && c < kMaxSeq)) return kSealExhausted;
  uint64_t seq = static_cast<uint64_t>(c);
  st[0] = c + 1;
  uint32_t epoch = static_cast<uint32_t>(st[1]) & 0xff;
  uint32_t hi = (epoch << 24) | static_cast<uint32_t>((seq >> 32) & 0xffffff);
  uint32_t lo = static_cast<uint32_t>(seq);
  if (plain != out + 16) memmove(out + 16, plain, len);  // then encrypt in place
  memcpy(out, header, kHeaderBytes);
  out[8] = hi >> 24; out[9] = hi >> 16; out[10] = hi >> 8; out[11] = hi;
  out[12] = lo >> 24; out[13] = lo >> 16; out[14] = lo >> 8; out[15] = lo;
  uint8_t nonce[12] = {0};
  memcpy(nonce + 4, out + 8, 8);
  if (!detail::SealRaw(key, nonce, out, 16, out + 16, len, out + 16, out + 16 + len)) {
    st[0] = c;  // nothing was sent under this counter
    return kSealFailed;
  }
  return static_cast<long>(len + kOverhead);
}

// Verify and decrypt the datagram `d[0, len)` into `out` (capacity `cap`, not
// overlapping d) WITHOUT touching the shared state: no counter is bumped and the
// replay window is not updated. Returns the plaintext length (and its counter in
// *seq_out: pass it to Accept() to take the datagram), an open error (not
// counted) or kAeadPunt (another epoch). The flow caches use it so that a
// datagram they end up not forwarding is left, untouched, to the JS Opener.
inline long Peek(const uint8_t* st, const uint8_t key[kKeyBytes], const uint8_t* d, size_t len, uint8_t* out, size_t cap,
                 uint64_t* seq_out) {
  const double* f = reinterpret_cast<const double*>(st);
  if (len < kOverhead || cap < len - kOverhead) return kOpenMalformed;
  uint32_t hi = (uint32_t(d[8]) << 24) | (uint32_t(d[9]) << 16) | (uint32_t(d[10]) << 8) | d[11];
  uint32_t lo = (uint32_t(d[12]) << 24) | (uint32_t(d[13]) << 16) | (uint32_t(d[14]) << 8) | d[15];
  uint64_t seq = (uint64_t(hi & 0xffffff) << 32) | lo;
  if (static_cast<double>(seq) >= kMaxSeq) return kOpenMalformed;
  if ((hi >> 24) != (static_cast<uint32_t>(f[0]) & 0xff)) return kAeadPunt;
  const uint32_t* blocks = reinterpret_cast<const uint32_t*>(st + kOpenStateHeader);
  const uint64_t nb = static_cast<uint64_t>(f[7]);
  const uint64_t size = nb * 32 - 32;
  const double top = f[1];
  if (top >= 0 && static_cast<double>(seq) <= top) {
    uint64_t t = static_cast<uint64_t>(top);
    if (seq + size <= t || (blocks[(seq / 32) % nb] & (1u << (seq % 32))) != 0) return kOpenReplay;
  }
  uint8_t nonce[12] = {0};
  memcpy(nonce + 4, d + 8, 8);
  const size_t clen = len - kOverhead;
  if (!detail::OpenRaw(key, nonce, d, 16, d + 16, clen, d + len - kTagBytes, out)) return kOpenAuth;
  *seq_out = seq;
  return static_cast<long>(clen);
}

// Takes a datagram Peek() verified: marks `seq` in the current epoch's replay
// window (RFC 6479 ring, as crypto/replay-window.ts) and counts it ok.
inline void Accept(uint8_t* st, uint64_t seq) {
  double* f = reinterpret_cast<double*>(st);
  uint32_t* blocks = reinterpret_cast<uint32_t*>(st + kOpenStateHeader);
  const uint64_t nb = static_cast<uint64_t>(f[7]);
  const double top = f[1];
  const uint64_t block = seq / 32;
  if (top < 0 || static_cast<double>(seq) > top) {
    int64_t topBlock = top < 0 ? -1 : static_cast<int64_t>(static_cast<uint64_t>(top) / 32);
    uint64_t diff = static_cast<uint64_t>(static_cast<int64_t>(block) - topBlock);
    if (diff > nb) diff = nb;
    for (uint64_t i = 1; i <= diff; i++) blocks[static_cast<uint64_t>(topBlock + static_cast<int64_t>(i)) % nb] = 0;
    f[1] = static_cast<double>(seq);
  }
  blocks[block % nb] |= 1u << (seq % 32);
  f[kOk] += 1;
}

// Verify and decrypt the datagram `d[0, len)` into `out` (capacity `cap`, not
// overlapping d). Returns the plaintext length, an open error (counted in the
// shared counters) or kAeadPunt (another epoch; not counted, not touched).
inline long Open(uint8_t* st, const uint8_t key[kKeyBytes], const uint8_t* d, size_t len, uint8_t* out, size_t cap) {
  double* f = reinterpret_cast<double*>(st);
  uint64_t seq = 0;
  long r = Peek(st, key, d, len, out, cap, &seq);
  switch (r) {
    case kAeadPunt: return r;
    case kOpenMalformed: f[kMalformed] += 1; return r;
    case kOpenReplay: f[kReplay] += 1; return r;
    case kOpenAuth: f[kAuth] += 1; return r;
    default: break;
  }
  Accept(st, seq);
  return r;
}

}  // namespace sleeve_aead
