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
	FWD_NEIGH,	/* a route: bpf_redirect_neigh() to its next hop, as the stack's output */
};

/*
 * Kernel 6.10's flag: the lookup takes params->mark (fib rules by fwmark). The UAPI headers the
 * program is built against predate it; an older kernel refuses the flag (-EINVAL), which sends the
 * packet to the stack.
 */
#ifndef BPF_FIB_LOOKUP_MARK
#define BPF_FIB_LOOKUP_MARK (1U << 5)
#endif

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
	__u32 flags;
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
	 * The MTU: a plain packet by its length; a GRO packet (one skb, many segments) by the
	 * kernel's own test of its segments, which a SUCCESS answer carries (tot_len 0).
	 */
	fib->tot_len = gso ? 0 : p->ip_len;
	fib->ifindex = skb->ifindex;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	/*
	 * The neighbour is the kernel's to resolve and keep fresh (fwd_redirect()), so the lookup
	 * skips it: a STALE entry's MAC would otherwise be used until the entry went, never probed.
	 * A marked packet is routed by its mark, as the stack routes it (6.10's params->mark shares
	 * its place with smac, an output; a kernel without the flag answers -EINVAL: the stack).
	 */
	flags = BPF_FIB_LOOKUP_SKIP_NEIGH;
	if (skb->mark) {
		__u32 mark = skb->mark;

		__builtin_memcpy(fib->smac, &mark, sizeof(mark));
		flags |= BPF_FIB_LOOKUP_MARK;
	}
	rc = bpf_fib_lookup(skb, fib, sizeof(*fib), flags);
	/* An IPv6 next hop for an IPv4 route (RFC 5549) is the stack's. */
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib->family == FWD_AF_INET)
		return FWD_NEIGH;
	return FWD_STACK;
}

/*
 * Send a packet fwd_route() found a route for, after its translation: TTL down by one (IP
 * checksum by difference, as ip_decrease_ttl), out of the route's device to its next hop through
 * the kernel's neighbour output (bpf_redirect_neigh), as ip_finish_output2 sends it: the MACs
 * are the neighbour's, an unknown neighbour is resolved (the packet queued meanwhile), and a STALE
 * one is re-confirmed (DELAY, PROBE) as for the stack's own packets.
 * Returns TC_ACT_REDIRECT, or TC_ACT_SHOT if the packet cannot be written (never seen).
 */
static __always_inline int fwd_redirect(struct __sk_buff *skb, const struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
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
	__builtin_memset(&nh, 0, sizeof(nh));
	nh.nh_family = FWD_AF_INET;
	nh.ipv4_nh = fib->ipv4_dst; /* the gateway, or the destination on a link */
	return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
}

#endif
