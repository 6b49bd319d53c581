/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Active rejects: the packet is turned into a TCP RST or an ICMP port unreachable from the VIP. */
#ifndef BLIXT_REJECT_H
#define BLIXT_REJECT_H

#include <linux/pkt_cls.h>
#include "csum.h"
#include "parse.h"

#define IP_DF 0x4000
#define REJECT_TTL 64
#define ICMP_QUOTE_MAX 68 /* the offending IPv4 header with options (60) + 8 bytes */

/* The TCP pseudo header followed by the TCP header, summed together. */
struct tcp_csum_block {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
	struct tcphdr tcp;
};

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

static __always_inline void reply_iphdr(struct iphdr *ip, __be32 saddr, __be32 daddr, __u8 proto,
					__u16 tot_len, __u8 tos, __u16 frag_off)
{
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = tos;
	ip->tot_len = bpf_htons(tot_len);
	ip->frag_off = bpf_htons(frag_off);
	ip->ttl = REJECT_TTL;
	ip->protocol = proto;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = csum_finish(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
}

/*
 * Answer a TCP segment with a RST from the address it was sent to (RFC 9293
 * 3.10.7.1): seq = its ACK if it had one, else ACK its sequence space.
 */
static __always_inline int reject_tcp(struct __sk_buff *skb, const struct packet *p)
{
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr in;
	struct tcp_csum_block b;
	__u32 flags_in;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) ||
	    bpf_skb_load_bytes(skb, p->l4_off, &in, sizeof(in)))
		return TC_ACT_SHOT;
	flags_in = p->tcp_flags;
	if (flags_in & TCPF_RST)
		return TC_ACT_SHOT; /* never answer a reset */

	__builtin_memset(&b, 0, sizeof(b));
	b.saddr = p->key.daddr;
	b.daddr = p->key.saddr;
	b.proto = IPPROTO_TCP;
	b.len = bpf_htons(sizeof(struct tcphdr));
	b.tcp.source = in.dest;
	b.tcp.dest = in.source;
	b.tcp.doff = 5;
	b.tcp.rst = 1;
	if (flags_in & TCPF_ACK) {
		b.tcp.seq = in.ack_seq;
	} else {
		__u32 len = p->l4_payload + !!(flags_in & TCPF_SYN) + !!(flags_in & TCPF_FIN);

		b.tcp.ack_seq = bpf_htonl(bpf_ntohl(in.seq) + len);
		b.tcp.ack = 1;
	}
	b.tcp.check = csum_finish(bpf_csum_diff(0, 0, (__be32 *)&b, sizeof(b), 0));

	reply_iphdr(&ip, b.saddr, b.daddr, IPPROTO_TCP,
		    sizeof(struct iphdr) + sizeof(struct tcphdr), 0, IP_DF);
	swap_macs(&eth);

	if (bpf_skb_change_tail(skb, L3_OFF + sizeof(ip) + sizeof(struct tcphdr), 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip), &b.tcp, sizeof(b.tcp),
				BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* Answer a UDP datagram with ICMP port unreachable quoting its IP header and 8 bytes. */
static __always_inline int reject_udp(struct __sk_buff *skb, const struct packet *p)
{
	__u8 quote[ICMP_QUOTE_MAX];
	struct ethhdr eth;
	struct iphdr ip;
	struct icmp_hdr icmp;
	__u32 qlen = (p->ihl_bytes + 8) & 0x7f;
	__s64 sum;

	if (qlen > ICMP_QUOTE_MAX || qlen < 28)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, L3_OFF, quote, qlen))
		return TC_ACT_SHOT;

	__builtin_memset(&icmp, 0, sizeof(icmp));
	icmp.type = ICMP_DEST_UNREACH;
	icmp.code = ICMP_PORT_UNREACH;
	sum = bpf_csum_diff(0, 0, (__be32 *)quote, qlen, 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	sum = bpf_csum_diff(0, 0, (__be32 *)&icmp, sizeof(icmp), sum);
	if (sum < 0)
		return TC_ACT_SHOT;
	icmp.checksum = csum_finish(sum);
	/* TOS 0xc0 (internetwork control) as the kernel's own ICMP errors. */
	reply_iphdr(&ip, p->key.daddr, p->key.saddr, IPPROTO_ICMP,
		    sizeof(ip) + sizeof(icmp) + qlen, 0xc0, 0);
	swap_macs(&eth);

	if (bpf_skb_change_tail(skb, L3_OFF + qlen, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, sizeof(ip) + sizeof(icmp), BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip), &icmp, sizeof(icmp),
				BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

#endif
