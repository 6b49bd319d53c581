/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Forwarding a flow's packets past the node's stack: the program looks up the route itself
 * (bpf_fib_lookup), does what IP forwarding does to the header (TTL, checksum, MACs) and hands the
 * packet to the egress of the route's device (bpf_redirect). A remote backend's flow comes in and
 * goes out of the uplink both ways; a local backend's goes from the uplink to the pod interface and
 * back. Anything but a clean answer leaves the packet to the stack, as before.
 * docs/dataplane.md, "Flows past the stack".
 */
#ifndef BLIXT_FORWARD_H
#define BLIXT_FORWARD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "csum.h"
#include "parse.h"

#define FWD_AF_INET 2 /* AF_INET: linux/socket.h pulls in libc headers */

/* What fwd_route() found. */
enum fwd_route {
	FWD_STACK = 0,	/* leave the packet to the stack (TC_ACT_OK): it routes, answers, drops */
	FWD_DIRECT,	/* route and neighbour known: MACs from the fib, bpf_redirect() */
	FWD_NEIGH,	/* route known, neighbour not (yet): bpf_redirect_neigh() resolves it */
};

/*
 * Whether a packet at ingress, to be sent from saddr:sport to daddr:dport, may skip the stack:
 * the route is a clean answer, the TTL allows another hop, and it fits the route's MTU. fib is
 * filled for fwd_redirect(); the caller judges the route's device (fib->ifindex). Everything else
 * (no route, a local address, forwarding off, too big, TTL 1, IP options) goes to the stack, which
 * does what forwarding does about it (ICMP errors included).
 */
static __always_inline int fwd_route(struct __sk_buff *skb, const struct packet *p, __be32 saddr,
				     __be16 sport, __be32 daddr, __be16 dport,
				     struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + L3_OFF;
	int gso = skb->gso_size != 0;
	long rc;

	/* IP options are the stack's to process when it forwards (record route, timestamps). */
	if ((void *)(ip + 1) > data_end || ip->ttl <= 1 || p->ihl_bytes != sizeof(*ip))
		return FWD_STACK;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = FWD_AF_INET;
	fib->tos = ip->tos;
	fib->l4_protocol = p->key.proto;
	fib->sport = sport;
	fib->dport = dport;
	/*
	 * The MTU: a plain packet by its length (checked before the neighbour, so a NO_NEIGH answer
	 * is checked too); a GRO packet (one skb, many segments) by the kernel's own test of its
	 * segments, which only a SUCCESS answer carries (tot_len 0).
	 */
	fib->tot_len = gso ? 0 : p->ip_len;
	fib->ifindex = skb->ifindex;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return FWD_DIRECT;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && !gso)
		return FWD_NEIGH;
	return FWD_STACK;
}

/*
 * Send a packet fwd_route() found a route for, after its translation: TTL down by one (IP
 * checksum by difference, as ip_decrease_ttl), the next hop's MACs, out of the route's device's
 * egress.
 * Returns TC_ACT_REDIRECT, or TC_ACT_SHOT if the packet cannot be written (never seen).
 */
static __always_inline int fwd_redirect(struct __sk_buff *skb, const struct bpf_fib_lookup *fib,
					int how)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + L3_OFF;
	struct bpf_redir_neigh nh;
	__u16 old, new;

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_SHOT;
	/* TTL is the high byte of the 16-bit word it shares with the protocol. */
	old = *(__u16 *)&ip->ttl;
	ip->ttl--;
	new = *(__u16 *)&ip->ttl;
	ip->check = csum_update(ip->check, csum_add32(~(__u32)old & 0xffff, new));
	if (how == FWD_NEIGH) {
		__builtin_memset(&nh, 0, sizeof(nh));
		nh.nh_family = FWD_AF_INET;
		nh.ipv4_nh = fib->ipv4_dst; /* the gateway, or the destination on a link */
		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	return bpf_redirect(fib->ifindex, 0);
}

#endif
