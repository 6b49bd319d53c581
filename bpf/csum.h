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

/* 32-bit ones' complement addition (end-around carry). */
static __always_inline __u32 csum_add32(__u32 sum, __u32 x)
{
	sum += x;
	return sum + (sum < x);
}

/*
 * The partial-sum difference of replacing two 32-bit words by two others, as
 * bpf_csum_diff() computes it, without the helper call (~25 ns on a VM).
 */
static __always_inline __u32 csum_diff2(__u32 old0, __u32 old1, __u32 new0, __u32 new1)
{
	return csum_add32(csum_add32(csum_add32(csum_add32(0, ~old0), ~old1), new0), new1);
}

/*
 * A CHECKSUM_PARTIAL field after pseudo-header words changed by diff: the
 * field holds the folded pseudo-header sum, not its complement.
 */
static __always_inline __u16 csum_update_partial(__u16 old, __u32 diff)
{
	return csum_fold64((__u64)old + diff);
}

/* A checksum field's value for data whose partial sum is sum. */
static __always_inline __u16 csum_finish(__u32 sum)
{
	return ~csum_fold64(sum);
}

#endif
