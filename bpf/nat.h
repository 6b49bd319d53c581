/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rewriting a packet's 4-tuple with incremental IP and TCP/UDP checksum updates. */
#ifndef BLIXT_NAT_H
#define BLIXT_NAT_H

#include "csum.h"
#include "parse.h"

#define IP_CSUM_OFF (L3_OFF + offsetof(struct iphdr, check))

/* The ports of a TCP/UDP header as they sit in the packet. */
struct l4_ports {
	__be16 sport;
	__be16 dport;
};

/* Offset of the L4 checksum field and the flags its updates need. */
static __always_inline __u32 l4_csum_off(const struct packet *p, __u64 *flags)
{
	if (p->key.proto == IPPROTO_UDP) {
		*flags = BPF_F_MARK_MANGLED_0; /* a zero UDP checksum means "none": keep it */
		return p->l4_off + offsetof(struct udphdr, check);
	}
	*flags = 0;
	return p->l4_off + offsetof(struct tcphdr, check);
}

/*
 * Rewrite addresses and ports of an IPv4 TCP/UDP packet to the tuple in v.
 * Checksums are updated by difference through the helpers, which also keep
 * CHECKSUM_PARTIAL (offloaded) and CHECKSUM_COMPLETE packets right.
 */
static __always_inline int rewrite_tuple(struct __sk_buff *skb, const struct packet *p,
					 const struct flow_value *v)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + L3_OFF;
	struct l4_ports *ports;
	__be32 old_addrs[2], new_addrs[2];
	struct l4_ports old_ports, new_ports;
	__u64 csum_flags;
	__u32 csum_off;
	__u32 diff;

	if ((void *)(ip + 1) > data_end)
		return -1;
	ports = data + p->l4_off;
	if ((void *)(ports + 1) > data_end)
		return -1;

	old_addrs[0] = ip->saddr;
	old_addrs[1] = ip->daddr;
	new_addrs[0] = v->saddr[0];
	new_addrs[1] = v->daddr[0];
	old_ports = *ports;
	new_ports.sport = v->sport;
	new_ports.dport = v->dport;

	ip->saddr = new_addrs[0];
	ip->daddr = new_addrs[1];
	*ports = new_ports;

	csum_off = l4_csum_off(p, &csum_flags);
	if (old_addrs[0] != new_addrs[0] || old_addrs[1] != new_addrs[1]) {
		diff = csum_diff2(old_addrs[0], old_addrs[1], new_addrs[0], new_addrs[1]);
		/* The IP header is never offloaded: update its checksum in place. */
		ip->check = csum_update(ip->check, diff);
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | csum_flags))
			return -1;
	}
	if (old_ports.sport != new_ports.sport || old_ports.dport != new_ports.dport) {
		diff = csum_add32(~*(__u32 *)&old_ports, *(__u32 *)&new_ports);
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, csum_flags))
			return -1;
	}
	return 0;
}

#endif
