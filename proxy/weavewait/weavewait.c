/*
 * weavewait: the entrypoint the tsweave Docker API proxy injects into every
 * container it puts on the weave network (bind-mounted read-only at /w/w).
 *
 * Usage: /w/w COMMAND [ARG...]
 *
 * It blocks until the network interface "ethwe" exists in the container's
 * network namespace, is administratively up, is operationally up (the veth
 * peer on the host is up too) and carries an IPv4 address; then it execs
 * COMMAND with PATH lookup, so the container's own process starts with the
 * weave network already usable. Weave Net solved the same start-up race the
 * same way (a tiny injected "weavewait" entrypoint); this is our own version.
 *
 * The router brings ethwe up as the LAST step of attaching (after addresses
 * and routes), so "up + running + has an address" means "ready".
 *
 * It must run in images without a shell or libc, hence a static C binary that
 * only uses ioctl(SIOCGIFFLAGS/SIOCGIFADDR) on a datagram socket (no /sys).
 *
 * Timeout: WEAVEWAIT_TIMEOUT seconds (default 30). On timeout it prints one
 * line to stderr and exits 1. Without a command it exits 127. SIGTERM/SIGINT
 * while waiting end it at once: as PID 1 of a container, signals without a
 * handler would be ignored and `docker stop` would hang until SIGKILL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IFNAME "ethwe"

static void on_signal(int sig) { _exit(128 + sig); }

/* 1 when ethwe is up, running and has an IPv4 address; 0 otherwise. */
static int ethwe_ready(int fd) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, IFNAME, IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) return 0; /* ENODEV: not moved in yet */
  if (!(ifr.ifr_flags & IFF_UP) || !(ifr.ifr_flags & IFF_RUNNING)) return 0;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, IFNAME, IFNAMSIZ - 1);
  ifr.ifr_addr.sa_family = AF_INET;
  if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) return 0; /* EADDRNOTAVAIL: no address yet */
  return 1;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "weavewait: no command to run (usage: /w/w COMMAND [ARG...])\n");
    return 127;
  }
  double timeout = 30;
  const char *t = getenv("WEAVEWAIT_TIMEOUT");
  if (t != NULL && *t != '\0') {
    char *end = NULL;
    double v = strtod(t, &end);
    if (end != NULL && *end == '\0' && v > 0 && v <= 86400) timeout = v;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "weavewait: cannot open a socket to query %s: %s\n", IFNAME, strerror(errno));
    return 1;
  }
  double deadline = now_seconds() + timeout;
  /* Poll every 10 ms: attaching takes tens of milliseconds, and a netlink
     subscription would need more code than this bounded loop. */
  const struct timespec step = {0, 10 * 1000 * 1000};
  while (!ethwe_ready(fd)) {
    if (now_seconds() >= deadline) {
      fprintf(stderr,
              "weavewait: timed out after %gs waiting for interface %s to be up with an address "
              "(is the weave router running and did the proxy attach this container?)\n",
              timeout, IFNAME);
      return 1;
    }
    nanosleep(&step, NULL);
  }
  close(fd);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  execvp(argv[1], argv + 1);
  int e = errno;
  fprintf(stderr, "weavewait: cannot run %s: %s\n", argv[1], strerror(e));
  return (e == ENOENT) ? 127 : 126;
}
