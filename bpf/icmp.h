/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors from backends (unreachable, time exceeded, parameter problem) back to the client. */
#ifndef BLIXT_ICMP_H
#define BLIXT_ICMP_H

#include <linux/pkt_cls.h>
#include "conntrack.h"
#include "counters.h"
#include "nat.h"
#include "csum.h"

/* The first 8 bytes of the quoted TCP/UDP header: ports and, for UDP, length and checksum. */
struct quoted_l4 {
	__be16 sport;
	__be16 dport;
	__be16 w2;
	__be16 w3; /* UDP checksum */
};

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/*
 * An ICMP error about a packet a backend sent towards the client (as the
 * backend or a router saw it) is rewritten as if about the packet the client
 * sent to the VIP: outer destination, inner addresses, ports and checksums.
 */
static __noinline int icmp_translate(struct __sk_buff *skb, const struct packet *p, __u8 dir)
{
	struct icmp_hdr icmp;
	struct iphdr inner, inner_new;
	struct quoted_l4 ports, ports_new;
	struct flow_key k;
	struct flow_value *v;
	__u32 icmp_off = p->l4_off;
	__u32 inner_off = icmp_off + sizeof(struct icmp_hdr);
	__u32 inner_l4_off, csum_word_off;
	__be32 outer_saddr, outer_daddr, client, vip;
	__be32 csum_old, csum_new;
	__s64 d_icmp, d_l4;
	__u16 l4_check;

	if (bpf_skb_load_bytes(skb, icmp_off, &icmp, sizeof(icmp)))
		return TC_ACT_OK;
	if (!icmp_is_error(icmp.type))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, inner_off, &inner, sizeof(inner)))
		return TC_ACT_OK;
	if (inner.version != 4 || inner.ihl < 5)
		return TC_ACT_OK;
	if (inner.protocol != IPPROTO_TCP && inner.protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	inner_l4_off = inner_off + inner.ihl * 4;
	if (bpf_skb_load_bytes(skb, inner_l4_off, &ports, sizeof(ports)))
		return TC_ACT_OK;

	/* The reply tuple of the quoted packet is what a conntrack reply entry knows. */
	ct_key(&k, inner.daddr, ports.dport, inner.saddr, ports.sport, inner.protocol, dir);
	v = bpf_map_lookup_elem(&conntrack, &k);
	if (!v || v->kind != CT_KIND_REPLY)
		return TC_ACT_OK;
	client = v->daddr[0];
	vip = v->saddr[0];

	/* Inner IP header: client -> VIP, its checksum updated by difference. */
	inner_new = inner;
	inner_new.saddr = client;
	inner_new.daddr = vip;
	d_l4 = bpf_csum_diff(&inner.saddr, 8, &inner_new.saddr, 8, 0);
	if (d_l4 < 0)
		return TC_ACT_SHOT;
	inner_new.check = csum_update(inner.check, d_l4);
	/* Bytes 8..19 of the inner header (ttl, protocol, check, addresses) changed. */
	d_icmp = bpf_csum_diff((__be32 *)&inner + 2, 12, (__be32 *)&inner_new + 2, 12, 0);
	if (d_icmp < 0)
		return TC_ACT_SHOT;

	ports_new = ports;
	ports_new.sport = v->dport;
	ports_new.dport = v->sport;
	d_l4 = bpf_csum_diff((__be32 *)&ports, 4, (__be32 *)&ports_new, 4, d_l4);
	d_icmp = bpf_csum_diff((__be32 *)&ports, 4, (__be32 *)&ports_new, 4, d_icmp);
	if (d_l4 < 0 || d_icmp < 0)
		return TC_ACT_SHOT;

	/* The quoted L4 checksum, if it was quoted, follows the addresses and ports. */
	if (inner.protocol == IPPROTO_UDP) {
		csum_word_off = inner_l4_off + 4;
		if (ports.w3 != 0) {
			l4_check = csum_update(ports.w3, d_l4);
			ports_new.w3 = l4_check ? l4_check : 0xffff;
		}
		d_icmp = bpf_csum_diff((__be32 *)&ports + 1, 4, (__be32 *)&ports_new + 1, 4, d_icmp);
		if (d_icmp < 0)
			return TC_ACT_SHOT;
		if (bpf_skb_store_bytes(skb, inner_l4_off, &ports_new, sizeof(ports_new), 0))
			return TC_ACT_SHOT;
	} else {
		csum_word_off = inner_l4_off + offsetof(struct tcphdr, check);
		if (bpf_skb_store_bytes(skb, inner_l4_off, &ports_new, 4, 0))
			return TC_ACT_SHOT;
		if (bpf_skb_load_bytes(skb, csum_word_off, &csum_old, 4) == 0) {
			csum_new = csum_old;
			*(__u16 *)&csum_new = csum_update(*(__u16 *)&csum_old, d_l4);
			d_icmp = bpf_csum_diff(&csum_old, 4, &csum_new, 4, d_icmp);
			if (d_icmp < 0)
				return TC_ACT_SHOT;
			if (bpf_skb_store_bytes(skb, csum_word_off, &csum_new, 4, 0))
				return TC_ACT_SHOT;
		}
	}
	if (bpf_skb_store_bytes(skb, inner_off, &inner_new, sizeof(inner_new), 0))
		return TC_ACT_SHOT;
	if (bpf_l4_csum_replace(skb, icmp_off + offsetof(struct icmp_hdr, checksum), 0, d_icmp, 0))
		return TC_ACT_SHOT;

	/* Outer header: to the client; from the VIP when the backend itself reported. */
	outer_saddr = p->key.saddr[0];
	outer_daddr = p->key.daddr[0];
	if (outer_saddr == inner.daddr) {
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, outer_saddr, vip, 4) ||
		    bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, saddr), &vip, 4, 0))
			return TC_ACT_SHOT;
	}
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, outer_daddr, client, 4) ||
	    bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, daddr), &client, 4, 0))
		return TC_ACT_SHOT;
	count_event(EV_ICMP_TRANSLATED);
	return TC_ACT_OK;
}

#endif
