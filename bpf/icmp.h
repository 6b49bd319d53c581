/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors (unreachable, time exceeded, parameter problem) about a flow, to its other end. */
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

/* How one ICMP error is rewritten: the quoted tuple and the outer addresses it gets. */
struct icmp_nat {
	__be32 inner_saddr;
	__be32 inner_daddr;
	__be16 inner_sport;
	__be16 inner_dport;
	__be32 outer_saddr;
	__be32 outer_daddr;
	__u8 inner; /* whether the quoted packet changes */
};

/*
 * Which flow an ICMP error is about, and how it must look to the other end:
 *  - from a backend (or a router on its way) about a packet the backend sent
 *    towards a client: about client->VIP, to the client, from the VIP when
 *    the backend itself reported (REPLY entry of the reversed quote);
 *  - from a client (or a router on its way) about a reply it got from the
 *    VIP, e.g. fragmentation needed: about backend->client (or ->node:port
 *    for remote backends), to the backend (DNAT entry of the reversed quote);
 *  - that error again at egress, on its way to a remote backend: from the
 *    node, whose address the backend's flow knows (REPLY entry of the quote).
 * Returns 0 when the error is about none of blixt's flows.
 */
static __always_inline int icmp_lookup(const struct packet *p, const struct iphdr *inner,
				       const struct quoted_l4 *ports, __u8 dir,
				       struct icmp_nat *n)
{
	struct flow_key k;
	struct flow_value *v, *snat;

	n->outer_saddr = p->key.saddr;
	n->outer_daddr = p->key.daddr;
	n->inner_saddr = inner->saddr;
	n->inner_daddr = inner->daddr;
	n->inner_sport = ports->sport;
	n->inner_dport = ports->dport;
	n->inner = 1;

	ct_key(&k, inner->daddr, ports->dport, inner->saddr, ports->sport, inner->protocol, dir);
	v = bpf_map_lookup_elem(&conntrack, &k);
	if (v && v->kind == CT_KIND_REPLY) {
		n->inner_saddr = v->daddr[0];
		n->inner_sport = v->dport;
		n->inner_daddr = v->saddr[0];
		n->inner_dport = v->sport;
		n->outer_daddr = v->daddr[0];
		if (p->key.saddr == inner->daddr)
			n->outer_saddr = v->saddr[0];
		return 1;
	}
	if (dir == DIR_INGRESS) {
		if (!v || v->kind != CT_KIND_DNAT)
			return 0;
		n->inner_saddr = v->daddr[0];
		n->inner_sport = v->dport;
		n->outer_daddr = v->daddr[0];
		/* A remote backend's flow runs from node:port: its SNAT entry knows which. */
		ct_key(&k, inner->daddr, ports->dport, v->daddr[0], v->dport, inner->protocol,
		       DIR_EGRESS);
		snat = bpf_map_lookup_elem(&conntrack, &k);
		if (snat && snat->kind == CT_KIND_SNAT) {
			n->inner_daddr = snat->saddr[0];
			n->inner_dport = snat->sport;
		}
		return 1;
	}
	ct_key(&k, inner->saddr, ports->sport, inner->daddr, ports->dport, inner->protocol,
	       DIR_INGRESS);
	v = bpf_map_lookup_elem(&conntrack, &k);
	if (!v || v->kind != CT_KIND_REPLY || p->key.daddr != inner->saddr ||
	    p->key.saddr == inner->daddr)
		return 0;
	n->outer_saddr = inner->daddr;
	n->inner = 0;
	return 1;
}

/*
 * Rewrite an ICMP error about a tracked flow (see icmp_lookup()): the quoted
 * IP header, ports and L4 checksum, the ICMP checksum, and the outer header.
 */
static __noinline int icmp_translate(struct __sk_buff *skb, const struct packet *p, __u8 dir)
{
	struct icmp_hdr icmp;
	struct iphdr inner, inner_new;
	struct quoted_l4 ports, ports_new;
	struct icmp_nat n;
	__u32 icmp_off = p->l4_off;
	__u32 inner_off = icmp_off + sizeof(struct icmp_hdr);
	__u32 inner_l4_off, csum_word_off;
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
	/* The quote must hold 8 bytes of L4 header within the IP total length (RFC 792). */
	if (inner_l4_off + sizeof(ports) > L3_OFF + p->ip_len)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, inner_l4_off, &ports, sizeof(ports)))
		return TC_ACT_OK;
	if (!icmp_lookup(p, &inner, &ports, dir, &n))
		return TC_ACT_OK;
	if (!n.inner)
		goto outer;

	/* Inner IP header: its addresses, its checksum updated by difference. */
	inner_new = inner;
	inner_new.saddr = n.inner_saddr;
	inner_new.daddr = n.inner_daddr;
	d_l4 = bpf_csum_diff(&inner.saddr, 8, &inner_new.saddr, 8, 0);
	if (d_l4 < 0)
		return TC_ACT_SHOT;
	inner_new.check = csum_update(inner.check, d_l4);
	/* Bytes 8..19 of the inner header (ttl, protocol, check, addresses) changed. */
	d_icmp = bpf_csum_diff((__be32 *)&inner + 2, 12, (__be32 *)&inner_new + 2, 12, 0);
	if (d_icmp < 0)
		return TC_ACT_SHOT;

	ports_new = ports;
	ports_new.sport = n.inner_sport;
	ports_new.dport = n.inner_dport;
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
		/* Only when quoted: bytes past the IP total length are no part of the message. */
		if (csum_word_off + 2 <= L3_OFF + p->ip_len &&
		    bpf_skb_load_bytes(skb, csum_word_off, &csum_old, 4) == 0) {
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

outer:
	if (n.outer_saddr != p->key.saddr) {
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, p->key.saddr, n.outer_saddr, 4) ||
		    bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, saddr), &n.outer_saddr,
					4, 0))
			return TC_ACT_SHOT;
	}
	if (n.outer_daddr != p->key.daddr) {
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, p->key.daddr, n.outer_daddr, 4) ||
		    bpf_skb_store_bytes(skb, L3_OFF + offsetof(struct iphdr, daddr), &n.outer_daddr,
					4, 0))
			return TC_ACT_SHOT;
	}
	count_event(EV_ICMP_TRANSLATED);
	return TC_ACT_OK;
}

#endif
