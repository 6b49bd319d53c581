/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Backend choice: a flow hash and a lookup in the service's Maglev table. */
#ifndef BLIXT_MAGLEV_H
#define BLIXT_MAGLEV_H

#include "maps.h"

static __always_inline __u32 rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* One MurmurHash3 round; the agent's flowHash() computes the same function. */
static __always_inline __u32 hash_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

/* Hash of the client's 5-tuple, equal on every node so they all pick alike. */
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = FLOW_HASH_SEED;

	/* Addresses as 16-byte map addresses (IPv4: one word, then zeros), as flowHash() does. */
	h = hash_word(h, bpf_ntohl(k->saddr));
#pragma unroll
	for (int i = 1; i < 4; i++)
		h = hash_word(h, 0);
	h = hash_word(h, bpf_ntohl(k->daddr));
#pragma unroll
	for (int i = 1; i < 4; i++)
		h = hash_word(h, 0);
	h = hash_word(h, ((__u32)bpf_ntohs(k->sport) << 16) | bpf_ntohs(k->dport));
	h = hash_word(h, k->proto);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The backend id for a new flow, or BACKEND_REJECT. */
static __always_inline __u32 maglev_pick(const struct service_value *svc, __u32 hash)
{
	__u32 sid = svc->id;
	__u32 slot;
	__u32 *id;
	void *table;

	if (svc->table_size == 0 || svc->table_size > MAGLEV_MAX)
		return BACKEND_REJECT;
	table = bpf_map_lookup_elem(&maglev, &sid);
	if (!table)
		return BACKEND_REJECT;
	slot = hash % svc->table_size;
	id = bpf_map_lookup_elem(table, &slot);
	if (!id)
		return BACKEND_REJECT;
	return *id;
}

#endif
