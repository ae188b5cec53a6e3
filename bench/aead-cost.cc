// bench/aead-cost.cc: CPU cost of sealing and opening one sleeve datagram in C, through
// the addon's own code (router/overlay/native/sleeve-aead.h: OpenSSL EVP ChaCha20-Poly1305
// with a cached key schedule), next to libsodium's one-shot IETF AEAD and to OpenSSL
// streaming one large buffer (the raw cipher rate with no per-datagram cost). CPU time
// (CLOCK_PROCESS_CPUTIME_ID), best of 5, so a loaded machine inflates it less than wall time.
// [perf, issue #19: how much of the encrypted sleeve's extra CPU per GB is the cipher]
//
//   g++ -O2 -o /tmp/aead-cost bench/aead-cost.cc -lcrypto -lsodium && for l in 64 512 1418; do /tmp/aead-cost $l; done
//
// Not part of the build or of npm test; needs libssl-dev and libsodium-dev.
#include "../router/overlay/native/sleeve-aead.h"
#include <sodium.h>
#include <time.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
using namespace sleeve_aead;
static double cpu() { timespec ts; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
int main(int argc, char** argv) {
  if (argc < 2) return 2;
  size_t len = static_cast<size_t>(atoi(argv[1]));
  if (len < 1 || len > 65536) return 2;
  size_t N = 300000;
  int sink = 0;  // decrypt results (the open loop reuses sealed data, so all succeed)
  uint8_t key[32]; for (int i = 0; i < 32; i++) key[i] = i * 7;
  std::vector<uint8_t> buf(len + 64); uint8_t tag[16], nonce[12] = {0}, aad[16] = {1};
  if (sodium_init() < 0 || !Init()) return 1;
  double bs = 1e9, bo = 1e9, ss = 1e9, so = 1e9, raw = 1e9;
  std::vector<uint8_t> big(len * 1000);
  for (int rep = 0; rep < 5; rep++) {
    double t0 = cpu();
    for (size_t i = 0; i < N; i++) { nonce[11] = i; detail::SealRaw(key, nonce, aad, 16, buf.data(), len, buf.data(), tag); }
    double t1 = cpu();
    for (size_t i = 0; i < N; i++) { detail::SealRaw(key, nonce, aad, 16, buf.data(), len, buf.data(), tag); detail::OpenRaw(key, nonce, aad, 16, buf.data(), len, tag, buf.data()); }
    double t2 = cpu();
    unsigned long long ml;
    for (size_t i = 0; i < N; i++) { nonce[11] = i; crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf.data(), tag, &ml, buf.data(), len, aad, 16, nullptr, nonce, key); }
    double t3 = cpu();
    for (size_t i = 0; i < N; i++) { crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf.data(), tag, &ml, buf.data(), len, aad, 16, nullptr, nonce, key); sink |= crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf.data(), nullptr, buf.data(), len, tag, aad, 16, nonce, key); }
    double t4 = cpu();
    for (size_t i = 0; i < N / 1000; i++) detail::SealRaw(key, nonce, aad, 16, big.data(), big.size(), big.data(), tag);
    double t5 = cpu();
    bs = std::min(bs, (t1 - t0) / N); bo = std::min(bo, (t2 - t1) / N - (t1 - t0) / N);
    ss = std::min(ss, (t3 - t2) / N); so = std::min(so, (t4 - t3) / N - (t3 - t2) / N); raw = std::min(raw, (t5 - t4) / N);
  }
  if (sink != 0) fprintf(stderr, "libsodium open failed\n");
  double g = 1e9 / len;
  printf("len %4zu  openssl seal %5.0f ns open %5.0f ns = %.2f s/GB | libsodium seal %5.0f open %5.0f = %.2f s/GB | openssl streaming seal %4.0f ns (%.2f s/GB)\n",
    len, bs*1e9, bo*1e9, (bs+bo)*g, ss*1e9, so*1e9, (ss+so)*g, raw*1e9, raw*g);
}
