/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing: Ethernet, IPv4 (with options), TCP/UDP ports, ICMP. */
#ifndef BLIXT_PARSE_H
#define BLIXT_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "structs.h"

#define L3_OFF ((__u32)sizeof(struct ethhdr))
#define IP_MF 0x2000
#define IP_OFFMASK 0x1fff

/* TCP flag bits in byte 13 of the TCP header. */
#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

/* ICMPv4 numbers (linux/icmp.h pulls in libc headers, so they are spelled here). */
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* The 8-byte header of an ICMPv4 error message. */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* unused, or the next-hop MTU of "fragmentation needed" */
};

/* Outcome of parsing one packet. */
enum parse_result {
	PARSE_OK = 0,		/* IPv4 TCP/UDP with full headers: tuple is set */
	PARSE_ICMP,		/* IPv4 ICMP with its 8-byte header */
	PARSE_OTHER,		/* not ours: pass untouched */
	PARSE_FRAGMENT,		/* IPv4 fragment: only the addresses are known */
	PARSE_TRUNCATED_L4,	/* IPv4 TCP/UDP whose L4 header is cut or bad */
};

/* What the program needs from a parsed IPv4 packet. */
struct packet {
	struct flow_key key;	/* tuple as this hook sees it */
	__u32 l4_off;		/* offset of the L4 header from the start of the frame */
	__u32 ip_len;		/* IPv4 total length */
	__u32 l4_payload;	/* TCP/UDP payload length by the IP header */
	__u8 tcp_flags;
	__u8 ihl_bytes;
};

static __always_inline int parse_packet(struct __sk_buff *skb, struct packet *p, __u8 dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end)
		return PARSE_OTHER;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_OTHER; /* ARP, IPv6 (a later issue), VLAN: not ours */
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return PARSE_OTHER; /* the kernel drops short IPv4 itself */
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_OTHER;
	ihl = ip->ihl * 4;
	p->ihl_bytes = ihl;
	p->ip_len = bpf_ntohs(ip->tot_len);
	if (p->ip_len < ihl || L3_OFF + p->ip_len > skb->len)
		return PARSE_OTHER; /* bad length: the kernel's ip_rcv drops it */

	__builtin_memset(&p->key, 0, sizeof(p->key));
	p->key.saddr = ip->saddr;
	p->key.daddr = ip->daddr;
	p->key.proto = ip->protocol;
	p->key.family = FAMILY_V4;
	p->key.dir = dir;
	p->l4_off = L3_OFF + ihl;
	p->tcp_flags = 0;

	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFMASK))
		return PARSE_FRAGMENT;

	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = data + p->l4_off;

		if ((void *)(tcp + 1) > data_end)
			return PARSE_TRUNCATED_L4;
		if (tcp->doff < 5 || ihl + tcp->doff * 4 > p->ip_len)
			return PARSE_TRUNCATED_L4;
		p->key.sport = tcp->source;
		p->key.dport = tcp->dest;
		p->tcp_flags = ((__u8 *)tcp)[13];
		p->l4_payload = p->ip_len - ihl - tcp->doff * 4;
		return PARSE_OK;
	}
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = data + p->l4_off;

		if ((void *)(udp + 1) > data_end)
			return PARSE_TRUNCATED_L4;
		if (bpf_ntohs(udp->len) < sizeof(*udp) || ihl + bpf_ntohs(udp->len) > p->ip_len)
			return PARSE_TRUNCATED_L4;
		p->key.sport = udp->source;
		p->key.dport = udp->dest;
		p->l4_payload = bpf_ntohs(udp->len) - sizeof(*udp);
		return PARSE_OK;
	}
	if (ip->protocol == IPPROTO_ICMP) {
		if (data + p->l4_off + sizeof(struct icmp_hdr) > data_end)
			return PARSE_OTHER;
		return PARSE_ICMP;
	}
	return PARSE_OTHER;
}

#endif
