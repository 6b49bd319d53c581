// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * syn_flood DST PORT SRC_NET SRC_BITS COUNT: sends COUNT TCP SYNs to DST:PORT
 * from random sources in SRC_NET/(32-SRC_BITS) and random ports, through a raw
 * socket (IP_HDRINCL), as fast as it can; prints the packets sent and the
 * seconds it took. For the reliability tests only: run it in a network
 * namespace whose only route leads to the test cluster.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint16_t *p = data;

	for (; len > 1; len -= 2)
		sum += *p++;
	if (len)
		sum += *(const uint8_t *)p;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

int main(int argc, char **argv)
{
	struct {
		struct iphdr ip;
		struct tcphdr tcp;
	} pkt;
	struct {
		uint32_t saddr, daddr;
		uint8_t zero, proto;
		uint16_t len;
		struct tcphdr tcp;
	} pseudo;
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct timespec t0, t1;
	uint32_t seed = 0x626c7874, net, dst;
	unsigned long count, sent = 0;
	int fd, one = 1, bits;

	if (argc != 6) {
		fprintf(stderr, "usage: %s DST PORT SRC_NET SRC_BITS COUNT\n", argv[0]);
		return 2;
	}
	dst = inet_addr(argv[1]);
	net = ntohl(inet_addr(argv[3]));
	bits = atoi(argv[4]);
	count = strtoul(argv[5], NULL, 10);
	to.sin_addr.s_addr = dst;
	fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one))) {
		perror("raw socket");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long i = 0; i < count; i++) {
		uint32_t r = xorshift(&seed);

		memset(&pkt, 0, sizeof(pkt));
		pkt.ip.version = 4;
		pkt.ip.ihl = 5;
		pkt.ip.tot_len = htons(sizeof(pkt));
		pkt.ip.ttl = 64;
		pkt.ip.protocol = IPPROTO_TCP;
		pkt.ip.saddr = htonl(net | (r & ((1u << bits) - 1)));
		pkt.ip.daddr = dst;
		pkt.tcp.source = htons(1024 + (xorshift(&seed) % 64000));
		pkt.tcp.dest = htons(atoi(argv[2]));
		pkt.tcp.seq = xorshift(&seed);
		pkt.tcp.doff = 5;
		pkt.tcp.syn = 1;
		pkt.tcp.window = htons(64240);
		pseudo.saddr = pkt.ip.saddr;
		pseudo.daddr = pkt.ip.daddr;
		pseudo.zero = 0;
		pseudo.proto = IPPROTO_TCP;
		pseudo.len = htons(sizeof(pkt.tcp));
		pseudo.tcp = pkt.tcp;
		pkt.tcp.check = csum(&pseudo, sizeof(pseudo), 0);
		pkt.ip.check = csum(&pkt.ip, sizeof(pkt.ip), 0);
		if (sendto(fd, &pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) == sizeof(pkt))
			sent++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%lu %.3f\n", sent, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	close(fd);
	return 0;
}
