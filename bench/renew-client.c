/*
 * The load client of bench/serve-renew.ts in C (OpenSSL), so that what queues at 200
 * renewals/s is `svcca serve`, not the client. Node's client side of a full mTLS
 * handshake plus a new SecureContext costs about as much CPU as the server's whole
 * renewal, so a Node client on the other core saturates first and its queue is what a
 * Node-client p99 measures. This one does the same work per renewal for a fraction of it:
 * a new TCP connection, a full TLS 1.3 handshake presenting the client's current chain,
 * the server verified against ca.crt and pinned by its exact URI SAN, POST /v1/renew with a
 * CSR made beforehand, the answer's chain read back as the next renewal's certificate.
 *
 * usage: renew-client HOST PORT CA_FILE SERVER_ID JOB_DIR CLIENTS RATE SECONDS
 *   JOB_DIR/client-<i>.pem  client i's first chain and key (PEM, chain then key)
 *   JOB_DIR/job-<j>.body    the exact JSON body of renewal j ({"csr": ...})
 *   JOB_DIR/job-<j>.key     the key renewal j's CSR is for
 * Clients take jobs in order; RATE 0 renews as fast as answered, otherwise the clients
 * together offer RATE renewals per second, evenly spaced (RENEW_CLIENT_RAMP: see ramp_ms).
 * Prints one line per renewal,
 *   ok <latency ms> <serial> <sent at, ms from the start>    or    error <reason>
 * ("warm" instead of "ok" during the ramp, the start being the ramp's end), then
 * "cpu <seconds> <wall seconds>": the CPU (user + system) it used from the first renewal
 * to the last, and how long that was (the ramp included).
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  char *body;
  size_t body_len;
  EVP_PKEY *key;
} job_t;

static const char *host, *server_id;
static int port, clients, seconds;
/* RENEW_CLIENT_KEEP=1 (the floor server, which signs nothing): read the answered chain but
 * keep presenting the first one. */
static int keep_chain;
static double rate;
/* RENEW_CLIENT_RAMP=S: for the first S seconds the offered rate rises from a tenth of RATE
 * to RATE, and those renewals print as "warm" lines: a server started cold compiles its hot
 * code under a load it can carry instead of queueing a backlog it then needs seconds to
 * drain. SECONDS are measured after the ramp. */
static double ramp_ms;
static SSL_CTX *ctx;
static job_t *jobs;
static int job_count;
static atomic_int next_job;
static double t_start, t_end;
static const char *job_dir;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_until(double t) {
  double d = t - now_ms();
  if (d <= 0) return;
  struct timespec ts = {(time_t)(d / 1e3), (long)((d - (time_t)(d / 1e3) * 1e3) * 1e6)};
  nanosleep(&ts, NULL);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(n + 1);
  if (fread(buf, 1, n, f) != (size_t)n) n = 0;
  buf[n] = 0;
  fclose(f);
  if (len) *len = n;
  return buf;
}

/* A chain (leaf first) from one PEM text and, when key is not NULL, the private key in it too. */
static int read_chain(const char *pem, size_t len, STACK_OF(X509) **chain, EVP_PKEY **key) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  *chain = sk_X509_new_null();
  X509 *x;
  while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) sk_X509_push(*chain, x);
  ERR_clear_error();
  if (key) {
    BIO_free(bio);
    bio = BIO_new_mem_buf(pem, (int)len);
    *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  }
  BIO_free(bio);
  return sk_X509_num(*chain) > 0 && (!key || *key);
}

static int has_uri_san(X509 *cert, const char *uri) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  int found = 0;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    const unsigned char *s = ASN1_STRING_get0_data(n->d.uniformResourceIdentifier);
    int l = ASN1_STRING_length(n->d.uniformResourceIdentifier);
    if ((size_t)l == strlen(uri) && memcmp(s, uri, l) == 0) found = 1;
  }
  GENERAL_NAMES_free(names);
  return found;
}

/* The JSON string value of "name" in body, unescaped (\n, \", \\, \/), or NULL. */
static char *json_string(const char *body, const char *name) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\":\"", name);
  const char *p = strstr(body, pattern);
  if (!p) return NULL;
  p += strlen(pattern);
  char *out = malloc(strlen(p) + 1), *o = out;
  for (; *p && *p != '"'; p++) {
    if (*p == '\\' && p[1]) {
      p++;
      *o++ = *p == 'n' ? '\n' : *p;
    } else
      *o++ = *p;
  }
  *o = 0;
  return out;
}

/* One renewal; returns NULL and fills *serial on success, or a reason. */
static const char *renew(STACK_OF(X509) **chain, EVP_PKEY **key, const job_t *job, char *serial, size_t serial_len) {
  static const char *failed_connect = "connect failed", *failed_tls = "TLS handshake failed",
                    *failed_id = "server is not SERVER_ID", *failed_io = "request/answer I/O failed",
                    *failed_status = "answer was not 200", *failed_chain = "answer had no certificate";
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return failed_connect;
  }
  SSL *ssl = SSL_new(ctx);
  SSL_use_certificate(ssl, sk_X509_value(*chain, 0));
  for (int i = 1; i < sk_X509_num(*chain); i++) SSL_add1_chain_cert(ssl, sk_X509_value(*chain, i));
  SSL_use_PrivateKey(ssl, *key);
  SSL_set_fd(ssl, fd);
  const char *fail = NULL;
  char head[256];
  size_t cap = 16384, got = 0;
  char *answer = malloc(cap);
  if (SSL_connect(ssl) != 1) {
    fail = failed_tls;
    goto done;
  }
  if (!has_uri_san(SSL_get0_peer_certificate(ssl), server_id)) {
    fail = failed_id;
    goto done;
  }
  int hl = snprintf(head, sizeof head,
                    "POST /v1/renew HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    host, port, job->body_len);
  if (SSL_write(ssl, head, hl) != hl || SSL_write(ssl, job->body, (int)job->body_len) != (int)job->body_len) {
    fail = failed_io;
    goto done;
  }
  for (;;) {
    if (cap - got < 4096) answer = realloc(answer, cap *= 2);
    int n = SSL_read(ssl, answer + got, (int)(cap - got - 1));
    if (n <= 0) break;
    got += n;
  }
  answer[got] = 0;
  if (strncmp(answer, "HTTP/1.1 200", 12) != 0) {
    fail = got ? failed_status : failed_io;
    goto done;
  }
  char *body = strstr(answer, "\r\n\r\n");
  char *pem = body ? json_string(body, "certificate") : NULL;
  char *sn = body ? json_string(body, "serial") : NULL;
  STACK_OF(X509) *next = NULL;
  if (!pem || !read_chain(pem, strlen(pem), &next, NULL)) {
    fail = failed_chain;
    if (next) sk_X509_pop_free(next, X509_free);
  } else {
    snprintf(serial, serial_len, "%s", sn ? sn : "?");
    if (keep_chain)
      sk_X509_pop_free(next, X509_free);
    else {
      sk_X509_pop_free(*chain, X509_free);
      *chain = next;
      EVP_PKEY_free(*key);
      EVP_PKEY_up_ref(job->key);
      *key = job->key;
    }
  }
  free(pem);
  free(sn);
done:
  free(answer);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  return fail;
}

/* When the k-th renewal of all is due (ms): one every 1/RATE s, fewer during the ramp
 * (the rate rising linearly from RATE/10). One schedule for all clients, so the arrivals
 * stay evenly spaced whichever client sends them. */
static atomic_int next_ticket;
static double due_at(int k) {
  double per_ms = rate / 1e3, ramped = per_ms * ramp_ms * 0.55;
  if (k >= ramped) return t_start + ramp_ms + (k - ramped) / per_ms;
  double a = 0.45 * per_ms / ramp_ms, b = 0.1 * per_ms; /* arrivals by t: a t^2 + b t */
  return t_start + (-b + sqrt(b * b + 4 * a * k)) / (2 * a);
}

static void *client(void *arg) {
  long i = (long)arg;
  char path[4096];
  snprintf(path, sizeof path, "%s/client-%ld.pem", job_dir, i);
  size_t len;
  char *pem = read_file(path, &len);
  STACK_OF(X509) *chain;
  EVP_PKEY *key;
  if (!pem || !read_chain(pem, len, &chain, &key)) {
    fprintf(stderr, "renew-client: cannot read %s\n", path);
    exit(2);
  }
  free(pem);
  char serial[128], line[256];
  while (now_ms() < t_end) {
    if (rate > 0) {
      sleep_until(due_at(atomic_fetch_add(&next_ticket, 1)));
      if (now_ms() >= t_end) break;
    }
    int j = atomic_fetch_add(&next_job, 1);
    if (j >= job_count) break;
    double start = now_ms();
    const char *fail = renew(&chain, &key, &jobs[j], serial, sizeof serial);
    double took = now_ms() - start;
    double measured_from = t_start + ramp_ms;
    if (fail)
      snprintf(line, sizeof line, "error %s\n", fail);
    else
      snprintf(line, sizeof line, "%s %.3f %s %.1f\n", start < measured_from ? "warm" : "ok", took, serial, start - measured_from);
    pthread_mutex_lock(&out_lock);
    fputs(line, stdout);
    pthread_mutex_unlock(&out_lock);
  }
  return NULL;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: renew-client HOST PORT CA_FILE SERVER_ID JOB_DIR CLIENTS RATE SECONDS\n");
    return 2;
  }
  host = argv[1];
  port = atoi(argv[2]);
  server_id = argv[4];
  job_dir = argv[5];
  clients = atoi(argv[6]);
  rate = atof(argv[7]);
  seconds = atoi(argv[8]);
  keep_chain = getenv("RENEW_CLIENT_KEEP") && strcmp(getenv("RENEW_CLIENT_KEEP"), "1") == 0;
  ramp_ms = getenv("RENEW_CLIENT_RAMP") ? atof(getenv("RENEW_CLIENT_RAMP")) * 1e3 : 0;

  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1) {
    fprintf(stderr, "renew-client: cannot load %s\n", argv[3]);
    return 2;
  }
  char path[4096];
  for (job_count = 0;; job_count++) {
    snprintf(path, sizeof path, "%s/job-%d.body", job_dir, job_count);
    if (access(path, R_OK) != 0) break;
  }
  jobs = calloc(job_count + 1, sizeof *jobs);
  for (int j = 0; j < job_count; j++) {
    snprintf(path, sizeof path, "%s/job-%d.body", job_dir, j);
    jobs[j].body = read_file(path, &jobs[j].body_len);
    snprintf(path, sizeof path, "%s/job-%d.key", job_dir, j);
    BIO *bio = BIO_new_file(path, "r");
    jobs[j].key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!jobs[j].body || !jobs[j].key) {
      fprintf(stderr, "renew-client: cannot read job %d in %s\n", j, job_dir);
      return 2;
    }
  }

  double cpu0 = cpu_seconds();
  t_start = now_ms() + 50;
  t_end = t_start + ramp_ms + seconds * 1e3;
  pthread_t *threads = calloc(clients, sizeof *threads);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (long i = 0; i < clients; i++) pthread_create(&threads[i], &attr, client, (void *)i);
  for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);

  printf("cpu %.3f %.3f\n", cpu_seconds() - cpu0, (now_ms() - t_start) / 1e3);
  return 0;
}
