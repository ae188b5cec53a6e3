/*
 * weave-net / weave-ipam: the tsweave CNI plugin as a small native executable, so a
 * pod start costs no Node.js start-up (CNI SPEC.md: the runtime execs the plugin with
 * CNI_* in the environment and the network configuration on stdin).
 *
 * It does no CNI work itself: it forwards argv, the CNI_* variables and stdin to the
 * local router as `POST /cni/exec` over the router's root-only unix socket, and copies
 * the answer (body = the plugin's stdout, header X-Cni-Exit = its exit code) to stdout.
 * The router runs the same code as the Node.js plugin (cni/weave-net.ts, run()) and
 * re-validates everything, including that the conf's stateDir is its own.
 *
 * Handled here: VERSION (no router needed), bounded stdin (MAX_CONF_BYTES, 10 s), and
 * "router not running" (no socket / connection refused): DEL of weave-net succeeds
 * with a note on stderr (the router frees the address when it finds the netns gone),
 * anything else prints CNI error 11 (STATUS: 50). That error's cniVersion is "1.0.0":
 * this program does not parse the conf.
 *
 * Socket: the first line of `weave-net.sock-path` next to this executable (written by
 * `weave setup-cni` from its state directory), else /var/lib/weave/weaver.sock.
 * `weave-ipam` is this same executable (selected by argv[0]'s basename, or --ipam).
 * No shell, no allocation beyond fixed bounds, no output but CNI JSON on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONF_BYTES (64 * 1024)    /* cni/spec.ts MAX_CONF_BYTES */
#define MAX_ENV_VALUE (16 * 1024)     /* cni/router-side.ts MAX_ENV_VALUE */
#define MAX_ENV_VARS 16
#define MAX_ANSWER (1 << 20)          /* as cni/weave-net.ts callRouter */
#define HEAD_ROOM 4096
#define STDIN_TIMEOUT_MS 10000
#define CALL_TIMEOUT_MS 90000         /* cni/weave-net.ts CALL_TIMEOUT_MS */
#define DEFAULT_SOCK "/var/lib/weave/weaver.sock"
#define NOT_RUNNING "tsweave router is not running on this node"
/* cni/spec.ts versionResult(): keep in step with SUPPORTED_VERSIONS (unit-tested). */
#define VERSION_JSON "{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"

extern char **environ;

/* A bounded output buffer: append fails (returns -1) instead of growing past cap. */
struct buf {
  char *p;
  size_t n, cap;
};

static int put(struct buf *b, const char *s, size_t n) {
  if (n > b->cap - b->n) return -1;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

static int puts_(struct buf *b, const char *s) { return put(b, s, strlen(s)); }

/* Append s[0..n) as a JSON string: quote, backslash and control bytes escaped (\u00XX);
 * other bytes as they are (the router decodes UTF-8 and re-validates). */
static int put_json(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (put(b, "\"", 1)) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      if (put(b, e, 2)) return -1;
    } else if (c < 0x20 || c == 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      if (put(b, e, 6)) return -1;
    } else if (put(b, (const char *)&c, 1)) return -1;
  }
  return put(b, "\"", 1);
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Print a CNI error object (cniVersion 1.0.0) on stdout and exit 1. */
static void fail(int code, const char *msg, const char *details) {
  static char mem[4096];
  struct buf b = {mem, 0, sizeof mem - 2};
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  puts_(&b, "{\"cniVersion\":\"1.0.0\",\"code\":");
  puts_(&b, num);
  puts_(&b, ",\"msg\":");
  put_json(&b, msg, strnlen(msg, 1024));
  if (details && *details) {
    puts_(&b, ",\"details\":");
    put_json(&b, details, strnlen(details, 1024));
  }
  b.p[b.n++] = '}';
  b.p[b.n++] = '\n';
  write_all(1, b.p, b.n);
  exit(1);
}

/* Read all of stdin, at most MAX_CONF_BYTES, within STDIN_TIMEOUT_MS. */
static size_t read_stdin(char *dst) {
  size_t n = 0;
  long deadline = now_ms() + STDIN_TIMEOUT_MS;
  for (;;) {
    long left = deadline - now_ms();
    struct pollfd pf = {0, POLLIN, 0};
    int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) fail(5, "no network configuration on stdin within 10 s", NULL);
    if (r < 0) fail(5, "cannot read stdin", strerror(errno));
    ssize_t got = read(0, dst + n, MAX_CONF_BYTES + 1 - n);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) fail(5, "cannot read stdin", strerror(errno));
    if (got == 0) return n;
    n += (size_t)got;
    if (n > MAX_CONF_BYTES) {
      char m[160];
      snprintf(m, sizeof m, "network configuration is more than %d bytes: check the conflist", MAX_CONF_BYTES);
      fail(6, m, NULL);
    }
  }
}

/* The router's socket path: weave-net.sock-path next to this executable, else the default. */
static void socket_path(char *out, size_t cap) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 64);
  snprintf(out, cap, "%s", DEFAULT_SOCK);
  if (n <= 0) return;
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return;
  strcpy(slash + 1, "weave-net.sock-path");
  FILE *f = fopen(exe, "re");
  if (!f) return;
  char line[256];
  if (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (line[0] == '/' && strlen(line) < cap && strlen(line) < sizeof(((struct sockaddr_un *)0)->sun_path)) snprintf(out, cap, "%s", line);
    else fail(7, "weave-net.sock-path next to the plugin is not an absolute socket path of at most 107 bytes", "reinstall with weave setup-cni");
  }
  fclose(f);
}

static const char *env_get(const char *name) {
  const char *v = getenv(name);
  return v ? v : "";
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
  base = base ? base + 1 : (argc > 0 && argv[0] ? argv[0] : "");
  int ipam = strcmp(base, "weave-ipam") == 0;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--ipam") == 0) ipam = 1;
  const char *cmd = env_get("CNI_COMMAND");

  if (strcmp(cmd, "VERSION") == 0) {
    write_all(1, VERSION_JSON, strlen(VERSION_JSON));
    return 0;
  }

  static char conf[MAX_CONF_BYTES + 1];
  size_t conf_n = read_stdin(conf);

  /* The request body: {"argv":[...],"env":{CNI_*},"stdin":"..."}; 6x covers escaping. */
  static char body_mem[6 * MAX_CONF_BYTES + MAX_ENV_VARS * (6 * MAX_ENV_VALUE + 64) + 256];
  struct buf body = {body_mem, 0, sizeof body_mem};
  puts_(&body, ipam ? "{\"argv\":[\"--ipam\"],\"env\":{" : "{\"argv\":[],\"env\":{");
  int nvars = 0;
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    if (++nvars > MAX_ENV_VARS) fail(4, "more than 16 CNI_* environment variables", NULL);
    if (strlen(eq + 1) > MAX_ENV_VALUE) fail(4, "a CNI_* environment variable is longer than 16 KiB", NULL);
    if (nvars > 1) puts_(&body, ",");
    if (put_json(&body, *e, (size_t)(eq - *e)) || puts_(&body, ":") || put_json(&body, eq + 1, strlen(eq + 1)))
      fail(4, "the CNI_* environment is too large", NULL);
  }
  if (puts_(&body, "},\"stdin\":") || put_json(&body, conf, conf_n) || puts_(&body, "}"))
    fail(6, "the network configuration is too large", NULL);

  char sock[256];
  socket_path(sock, sizeof sock);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(sock) >= sizeof sa.sun_path) fail(7, "the router's socket path is longer than 107 bytes", sock);
  memcpy(sa.sun_path, sock, strlen(sock) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(5, "cannot talk to the tsweave router", strerror(errno));
  int rc;
  do rc = connect(fd, (struct sockaddr *)&sa, sizeof sa); while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) {
      if (strcmp(cmd, "DEL") == 0 && !ipam) {
        /* As cni/weave-net.ts: success, so the runtime deletes the netns; the router
         * reclaims the address when it starts and finds the netns gone. */
        char note[256];
        snprintf(note, sizeof note, "weave-net: DEL %.64s: " NOT_RUNNING "; its address is freed when the router starts and finds the pod's network namespace gone\n", env_get("CNI_CONTAINERID"));
        for (char *c = note; *c; c++)
          if ((unsigned char)*c < 0x20 && *c != '\n') *c = '?';
        write_all(2, note, strlen(note));
        return 0;
      }
      char details[512];
      snprintf(details, sizeof details, "no router listens on %s: start it (weave launch) or check weave-net.sock-path next to the plugin", sock);
      fail(strcmp(cmd, "STATUS") == 0 ? 50 : 11, NOT_RUNNING, details);
    }
    fail(5, "cannot talk to the tsweave router", strerror(errno));
  }

  static char head[256];
  int hn = snprintf(head, sizeof head, "POST /cni/exec HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.n);
  long deadline = now_ms() + CALL_TIMEOUT_MS;
  const char *parts[2] = {head, body.p};
  size_t lens[2] = {(size_t)hn, body.n};
  for (int i = 0; i < 2; i++) {
    const char *p = parts[i];
    size_t n = lens[i];
    while (n > 0) {
      long left = deadline - now_ms();
      struct pollfd pf = {fd, POLLOUT, 0};
      int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) fail(11, "tsweave router did not take POST /cni/exec within 90 s (see its log)", NULL);
      ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (w < 0) fail(5, "cannot talk to the tsweave router", strerror(errno));
      p += w;
      n -= (size_t)w;
    }
  }
  /* No shutdown(SHUT_WR): Node's HTTP server drops a request whose client half-closes. */

  static char ans[MAX_ANSWER + HEAD_ROOM + 1];
  size_t an = 0;
  for (;;) {
    long left = deadline - now_ms();
    struct pollfd pf = {fd, POLLIN, 0};
    int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) fail(11, "tsweave router did not answer POST /cni/exec within 90 s (see its log)", NULL);
    if (an >= sizeof ans - 1) fail(101, "tsweave router sent more than 1 MiB", NULL);
    ssize_t got = read(fd, ans + an, sizeof ans - 1 - an);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) fail(5, "cannot talk to the tsweave router", strerror(errno));
    if (got == 0) break;
    an += (size_t)got;
  }
  close(fd);
  ans[an] = 0;

  /* Status line, then headers up to the blank line. */
  char *end = memmem(ans, an, "\r\n\r\n", 4);
  int status = 0;
  if (!end || sscanf(ans, "HTTP/1.%*d %d", &status) != 1) fail(101, "tsweave router sent a malformed answer to POST /cni/exec", NULL);
  *end = 0;
  char *payload = end + 4;
  size_t payload_n = an - (size_t)(payload - ans);
  int exit_code = -1;
  for (char *line = strstr(ans, "\r\n"); line; line = strstr(line, "\r\n")) {
    line += 2;
    if (strncasecmp(line, "x-cni-exit:", 11) == 0) {
      char *p = line + 11;
      while (*p == ' ' || *p == '\t') p++;
      if (strncmp(p, "0\r", 2) == 0 || strcmp(p, "0") == 0) exit_code = 0;
      else if (strncmp(p, "1\r", 2) == 0 || strcmp(p, "1") == 0) exit_code = 1;
    }
  }
  if (status != 200 || exit_code < 0) {
    /* An error from the API itself (starting: 503; an old router without the route:
     * 404; a refused body: 400): its JSON {error} goes into details as text. */
    char msg[128], details[600];
    snprintf(msg, sizeof msg, "tsweave router refused POST /cni/exec (HTTP %d)", status);
    snprintf(details, sizeof details, "%.*s", (int)(payload_n < 512 ? payload_n : 512), payload);
    fail(status == 503 ? 11 : 101, msg, details);
  }
  write_all(1, payload, payload_n);
  return exit_code;
}
