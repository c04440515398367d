/*
 * deut-impair: netem's delay, jitter, loss, duplication and reordering in userspace, for
 * kernels without sch_netem. It runs inside one network namespace and serves an NFQUEUE
 * rule of that namespace's INPUT chain (testkit adds `-i eth0 -p udp -j NFQUEUE
 * --queue-num N --queue-bypass`, so a dead impairer lets traffic through instead of
 * blackholing it). Every queued packet is, in this order of decisions:
 *   - dropped with probability --loss;
 *   - otherwise passed at once with probability --reorder (it overtakes the held ones), or
 *     held for --delay-ms plus a uniform jitter in [-jitter, +jitter] and then accepted;
 *     verdicts are issued in due-time order, not arrival order, so jitter reorders too;
 *   - when accepted, copied with probability --duplicate: the copy is re-sent to the local
 *     address through a raw socket; it arrives on `lo`, which the rule does not queue.
 * Decisions come from a seeded splitmix64, so a run with the same seed and the same arrival
 * order decides the same way. Counters go to stderr on SIGTERM, SIGINT and SIGUSR1.
 * Prints "ready" on stdout once bound to the queue.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HELD 8192
#define MAX_PACKET 65536

struct held {
  uint64_t due_ns;
  uint32_t id;
  uint64_t order; /* arrival order: equal due times leave in arrival order */
};

static struct held heap[MAX_HELD];
static size_t held_count;
static uint64_t rng_state;
static uint64_t arrivals;
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t report_requested;

static struct {
  unsigned long long received, dropped, duplicated, reordered, overflowed, delayed;
} counters;

static struct {
  double delay_ms, jitter_ms, loss, duplicate, reorder;
  unsigned queue;
  uint64_t seed;
} config = { 0, 0, 0, 0, 0, 0, 1 };

static int raw_socket = -1;
static struct nfq_q_handle *queue_handle;
/* Copies of held packets, for duplication when they are accepted. */
static unsigned char *copies[MAX_HELD];
static uint32_t copy_ids[MAX_HELD];
static int copy_lengths[MAX_HELD];

static uint64_t splitmix64(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double uniform(void) { return (double)(splitmix64() >> 11) / 9007199254740992.0; }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static int earlier(const struct held *a, const struct held *b) {
  return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->order < b->order);
}

static void heap_push(struct held item) {
  size_t i = held_count++;
  heap[i] = item;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(&heap[i], &heap[parent])) break;
    struct held t = heap[i];
    heap[i] = heap[parent];
    heap[parent] = t;
    i = parent;
  }
}

static struct held heap_pop(void) {
  struct held top = heap[0];
  heap[0] = heap[--held_count];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < held_count && earlier(&heap[l], &heap[m])) m = l;
    if (r < held_count && earlier(&heap[r], &heap[m])) m = r;
    if (m == i) break;
    struct held t = heap[i];
    heap[i] = heap[m];
    heap[m] = t;
    i = m;
  }
  return top;
}

/* Slot of a packet's copy, by id (ids are sequential per queue, so id % MAX_HELD rarely collides;
 * a collision only loses the chance to duplicate that packet). */
static size_t copy_slot(uint32_t id) { return id % MAX_HELD; }

static void remember_copy(uint32_t id, const unsigned char *data, int length) {
  size_t slot = copy_slot(id);
  free(copies[slot]);
  copies[slot] = NULL;
  if (length <= 0 || length > MAX_PACKET) return;
  copies[slot] = malloc((size_t)length);
  if (copies[slot] == NULL) return;
  memcpy(copies[slot], data, (size_t)length);
  copy_ids[slot] = id;
  copy_lengths[slot] = length;
}

/* Re-sends a copy of an accepted packet to its destination (this host) through the raw socket. */
static void duplicate_if_drawn(uint32_t id) {
  size_t slot = copy_slot(id);
  unsigned char *data = copies[slot];
  int length = copy_lengths[slot];
  int mine = data != NULL && copy_ids[slot] == id;
  if (mine) copies[slot] = NULL;
  if (!mine) return;
  if (uniform() < config.duplicate && length >= (int)sizeof(struct iphdr)) {
    const struct iphdr *ip = (const struct iphdr *)data;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = ip->daddr };
    if (sendto(raw_socket, data, (size_t)length, 0, (struct sockaddr *)&to, sizeof to) == length) counters.duplicated++;
  }
  free(data);
}

static void accept_packet(uint32_t id) {
  nfq_set_verdict(queue_handle, id, NF_ACCEPT, 0, NULL);
  if (config.duplicate > 0) duplicate_if_drawn(id);
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *message, struct nfq_data *data, void *context) {
  (void)message;
  (void)context;
  struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
  if (header == NULL) return 0;
  uint32_t id = ntohl(header->packet_id);
  counters.received++;
  /* The draws happen in a fixed order per packet, so a seed reproduces every decision. */
  double loss_draw = uniform();
  double reorder_draw = uniform();
  double jitter_draw = uniform();
  if (loss_draw < config.loss) {
    counters.dropped++;
    return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
  }
  if (config.duplicate > 0) {
    unsigned char *payload = NULL;
    int length = nfq_get_payload(data, &payload);
    remember_copy(id, payload, length);
  }
  double delay_ms = config.delay_ms + config.jitter_ms * (2 * jitter_draw - 1);
  if (reorder_draw < config.reorder || delay_ms <= 0) {
    if (reorder_draw < config.reorder && config.delay_ms > 0) counters.reordered++;
    accept_packet(id);
    return 0;
  }
  if (held_count == MAX_HELD) {
    counters.overflowed++;
    return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
  }
  counters.delayed++;
  heap_push((struct held){ .due_ns = now_ns() + (uint64_t)(delay_ms * 1e6), .id = id, .order = arrivals++ });
  return 0;
}

static void release_due(void) {
  uint64_t now = now_ns();
  while (held_count > 0 && heap[0].due_ns <= now) accept_packet(heap_pop().id);
}

static void report(void) {
  fprintf(stderr, "deut-impair queue %u: received %llu, dropped %llu, delayed %llu, reordered %llu, duplicated %llu, overflowed %llu, held %zu\n", config.queue,
          counters.received, counters.dropped, counters.delayed, counters.reordered, counters.duplicated, counters.overflowed, held_count);
}

static void on_stop(int signal) {
  (void)signal;
  stop_requested = 1;
}

static void on_report(int signal) {
  (void)signal;
  report_requested = 1;
}

static int parse_probability(const char *text, double *out) {
  char *end;
  double value = strtod(text, &end);
  if (*end != '\0' || !(value >= 0 && value <= 1)) return -1;
  *out = value;
  return 0;
}

static int parse_milliseconds(const char *text, double *out) {
  char *end;
  double value = strtod(text, &end);
  if (*end != '\0' || !(value >= 0 && value <= 60000)) return -1;
  *out = value;
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: deut-impair --queue N [--delay-ms D] [--jitter-ms J] [--loss P] [--duplicate P] [--reorder P] [--seed S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int have_queue = 0;
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i];
    if (i + 1 >= argc) usage();
    const char *value = argv[++i];
    int bad = 0;
    if (strcmp(flag, "--queue") == 0) {
      char *end;
      unsigned long q = strtoul(value, &end, 10);
      bad = *end != '\0' || q > 65535;
      config.queue = (unsigned)q;
      have_queue = 1;
    } else if (strcmp(flag, "--delay-ms") == 0) bad = parse_milliseconds(value, &config.delay_ms);
    else if (strcmp(flag, "--jitter-ms") == 0) bad = parse_milliseconds(value, &config.jitter_ms);
    else if (strcmp(flag, "--loss") == 0) bad = parse_probability(value, &config.loss);
    else if (strcmp(flag, "--duplicate") == 0) bad = parse_probability(value, &config.duplicate);
    else if (strcmp(flag, "--reorder") == 0) bad = parse_probability(value, &config.reorder);
    else if (strcmp(flag, "--seed") == 0) {
      char *end;
      config.seed = strtoull(value, &end, 10);
      bad = *end != '\0';
    } else bad = 1;
    if (bad) usage();
  }
  if (!have_queue) usage();
  rng_state = config.seed;

  struct sigaction stop_action = { .sa_handler = on_stop };
  struct sigaction report_action = { .sa_handler = on_report };
  sigaction(SIGTERM, &stop_action, NULL);
  sigaction(SIGINT, &stop_action, NULL);
  sigaction(SIGUSR1, &report_action, NULL);

  raw_socket = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (raw_socket < 0) {
    perror("deut-impair: raw socket");
    return 1;
  }
  struct nfq_handle *handle = nfq_open();
  if (handle == NULL) {
    perror("deut-impair: nfq_open");
    return 1;
  }
  queue_handle = nfq_create_queue(handle, (uint16_t)config.queue, on_packet, NULL);
  if (queue_handle == NULL) {
    perror("deut-impair: nfq_create_queue");
    return 1;
  }
  if (nfq_set_mode(queue_handle, config.duplicate > 0 ? NFQNL_COPY_PACKET : NFQNL_COPY_META, 0xffff) < 0) {
    perror("deut-impair: nfq_set_mode");
    return 1;
  }
  nfq_set_queue_maxlen(queue_handle, MAX_HELD);
  int fd = nfq_fd(handle);
  /* A large receive buffer: a burst must not overflow the netlink socket while packets are held. */
  int buffer = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);
  printf("ready\n");
  fflush(stdout);

  static char packet[MAX_PACKET + 4096];
  while (!stop_requested) {
    if (report_requested) {
      report_requested = 0;
      report();
    }
    int timeout = -1;
    if (held_count > 0) {
      uint64_t now = now_ns();
      timeout = heap[0].due_ns <= now ? 0 : (int)((heap[0].due_ns - now + 999999) / 1000000);
    }
    struct pollfd wait = { .fd = fd, .events = POLLIN };
    int ready = poll(&wait, 1, timeout);
    if (ready < 0 && errno != EINTR) {
      perror("deut-impair: poll");
      break;
    }
    if (ready > 0) {
      /* Drain everything waiting so verdicts stay close to their due times. */
      for (;;) {
        ssize_t got = recv(fd, packet, sizeof packet, MSG_DONTWAIT);
        if (got < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOBUFS) perror("deut-impair: recv");
          if (errno == ENOBUFS) counters.overflowed++;
          break;
        }
        nfq_handle_packet(handle, packet, (int)got);
      }
    }
    release_due();
  }
  report();
  /* Whatever is still held leaves now rather than being dropped by the queue's teardown. */
  while (held_count > 0) accept_packet(heap_pop().id);
  nfq_destroy_queue(queue_handle);
  nfq_close(handle);
  return 0;
}
