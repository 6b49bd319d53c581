/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ones' complement checksum arithmetic for headers the program builds or edits by hand. */
#ifndef BLIXT_CSUM_H
#define BLIXT_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* A checksum field's new value after the data it covers changed by diff (bpf_csum_diff). */
static __always_inline __u16 csum_update(__u16 old, __u32 diff)
{
	return ~csum_fold64((__u64)(__u16)~old + diff);
}

/* A checksum field's value for data whose partial sum is sum. */
static __always_inline __u16 csum_finish(__u32 sum)
{
	return ~csum_fold64(sum);
}

#endif
