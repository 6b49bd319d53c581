/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rewriting a packet's 4-tuple with incremental IP and TCP/UDP checksum updates. */
#ifndef BLIXT_NAT_H
#define BLIXT_NAT_H

#include "csum.h"
#include "parse.h"
#include "skb.h"

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
 * The L4 checksum of a packet the kernel will not finish itself: updated with
 * the helper, which also keeps skb->csum of CHECKSUM_COMPLETE packets right.
 */
static __noinline int l4_csum_complete(struct __sk_buff *skb, const struct packet *p,
				       __u32 d_addrs, __u32 d_ports)
{
	__u64 flags;
	__u32 off = l4_csum_off(p, &flags);

	if (d_addrs && bpf_l4_csum_replace(skb, off, 0, d_addrs, BPF_F_PSEUDO_HDR | flags))
		return -1;
	if (d_ports && bpf_l4_csum_replace(skb, off, 0, d_ports, flags))
		return -1;
	return 0;
}

/*
 * Rewrite addresses and ports of an IPv4 TCP/UDP packet to the tuple in v,
 * with checksums updated by difference. No helper call on the common path:
 * the L4 checksum is edited in place by the packet's checksum state
 * (CHECKSUM_PARTIAL holds only the pseudo-header sum, which ports are not
 * part of); CHECKSUM_COMPLETE packets go through bpf_l4_csum_replace().
 */
static __always_inline int rewrite_tuple(struct __sk_buff *skb, const struct packet *p,
					 const struct flow_value *v)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + L3_OFF;
	struct l4_ports *ports;
	struct l4_ports new_ports;
	__sum16 *check;
	__u32 d_addrs = 0, d_ports = 0, summed;
	__u16 sum;

	if ((void *)(ip + 1) > data_end || p->l4_off > L3_OFF + 60)
		return -1; /* l4_off: bounded for the verifier where p is a global function's argument */
	ports = data + p->l4_off;
	/* The TCP checksum is at byte 16; a UDP header is 8 bytes. */
	if (p->key.proto == IPPROTO_TCP) {
		if ((void *)ports + sizeof(struct tcphdr) > data_end)
			return -1;
		check = &((struct tcphdr *)ports)->check;
	} else {
		if ((void *)ports + sizeof(struct udphdr) > data_end)
			return -1;
		check = &((struct udphdr *)ports)->check;
	}

	if (ip->saddr != v->saddr[0] || ip->daddr != v->daddr[0]) {
		d_addrs = csum_diff2(ip->saddr, ip->daddr, v->saddr[0], v->daddr[0]);
		ip->saddr = v->saddr[0];
		ip->daddr = v->daddr[0];
		/* The IP header is never offloaded: update its checksum in place. */
		ip->check = csum_update(ip->check, d_addrs);
	}
	new_ports.sport = v->sport;
	new_ports.dport = v->dport;
	if (*(__u32 *)ports != *(__u32 *)&new_ports) {
		d_ports = csum_add32(~*(__u32 *)ports, *(__u32 *)&new_ports);
		*ports = new_ports;
	}
	if (!d_addrs && !d_ports)
		return 0;

	summed = skb_ip_summed(skb);
	if (summed == CHECKSUM_COMPLETE)
		return l4_csum_complete(skb, p, d_addrs, d_ports);
	/* A zero UDP checksum means "none" and stays zero. */
	if (p->key.proto == IPPROTO_UDP && *check == 0)
		return 0;
	if (summed == CHECKSUM_PARTIAL) {
		if (!d_addrs)
			return 0;
		sum = csum_update_partial(*check, d_addrs);
	} else {
		sum = csum_update(*check, csum_add32(d_addrs, d_ports));
	}
	if (p->key.proto == IPPROTO_UDP && sum == 0)
		sum = 0xffff; /* 0 would mean "no checksum" */
	*check = sum;
	return 0;
}

#endif
