// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * l4bench: a small TCP load tool for the data-plane benchmarks (no netperf on
 * the machines). Prints one JSON object.
 *   l4bench serve PORT                    epoll echo server
 *   l4bench crr HOST PORT SECONDS THREADS  connect/1-byte request/response/close loop
 *   l4bench rr HOST PORT SECONDS           1-byte ping-pong on one connection: RTT percentiles
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct sockaddr_in target(const char *host, const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(port)) };

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", host);
		exit(2);
	}
	return a;
}

static int serve(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 4096)) {
		perror("listen");
		return 1;
	}
	ev.data.fd = ls;
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == ls) {
				int c;

				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			char buf[65536];
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				close(fd);
				continue;
			}
			if (write(fd, buf, r) < 0)
				close(fd);
		}
	}
}

struct crr_arg {
	struct sockaddr_in to;
	uint64_t until;
	uint64_t done;
	uint64_t failed;
};

static void *crr_thread(void *p)
{
	struct crr_arg *a = p;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int one = 1;

	while (now_ns() < a->until) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		char c = 'x';

		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* close with RST: no TIME_WAIT, so the client never runs out of ports */
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (connect(s, (struct sockaddr *)&a->to, sizeof(a->to)) || write(s, &c, 1) != 1 ||
		    read(s, &c, 1) != 1)
			a->failed++;
		else
			a->done++;
		close(s);
	}
	return NULL;
}

static int crr(struct sockaddr_in to, double seconds, int threads)
{
	pthread_t t[64];
	struct crr_arg args[64];
	uint64_t start = now_ns(), done = 0, failed = 0;

	if (threads > 64)
		threads = 64;
	for (int i = 0; i < threads; i++) {
		args[i] = (struct crr_arg){ .to = to, .until = start + (uint64_t)(seconds * 1e9) };
		pthread_create(&t[i], NULL, crr_thread, &args[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		done += args[i].done;
		failed += args[i].failed;
	}
	printf("{\"conn_per_s\":%.1f,\"connections\":%lu,\"failed\":%lu}\n",
	       done / ((now_ns() - start) / 1e9), done, failed);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int rr(struct sockaddr_in to, double seconds)
{
	size_t cap = 1 << 22, n = 0;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t until;

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s, (struct sockaddr *)&to, sizeof(to))) {
		perror("connect");
		return 1;
	}
	until = now_ns() + (uint64_t)(seconds * 1e9);
	while (n < cap) {
		char c = 'x';
		uint64_t t0 = now_ns();

		if (t0 >= until)
			break;
		if (write(s, &c, 1) != 1 || read(s, &c, 1) != 1) {
			perror("rr");
			return 1;
		}
		lat[n++] = now_ns() - t0;
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"transactions\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f}\n", n, lat[n / 2] / 1e3,
	       lat[(n * 99) / 100] / 1e3);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "crr"))
		return crr(target(argv[2], argv[3]), atof(argv[4]), atoi(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "rr"))
		return rr(target(argv[2], argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: l4bench serve PORT | crr HOST PORT SECONDS THREADS | rr HOST PORT SECONDS\n");
	return 2;
}
